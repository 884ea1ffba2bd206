// Package datago is the loader: it validates a configuration, wires a source to a pool of workers
// that fetch and process images, and serves the processed samples from a bounded ready queue.
//
//	source.List (1 goroutine, once per epoch) -> items (prefetch_buffer_size) -> fetchers (IO)
//	  -> decoders (concurrency) [-> collector: listing order, batches] -> ready (samples_buffer_size) -> Next
//
// Every stage stops when the client's context is cancelled; Stop waits for all of them.
package datago

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/datago-dev/datago/internal/bucket"
	"github.com/datago-dev/datago/internal/imaging"
	"github.com/datago-dev/datago/internal/resume"
	"github.com/datago-dev/datago/internal/source"
)

// Version of the loader.
const Version = "0.1.0"

var (
	// ErrEnd: the source is exhausted or the limit reached.
	ErrEnd = errors.New("end of samples")
	// ErrTimeout: no sample was ready within the timeout.
	ErrTimeout = errors.New("timeout waiting for a sample")
	// ErrState: the call does not fit the client's state.
	ErrState = errors.New("invalid client state")
)

// Skip reasons of the pipeline (every reason is defined in internal/source/reasons.go).
const (
	ReasonDecodeError = source.ReasonDecodeError
	ReasonTooLarge    = source.ReasonTooLarge
	ReasonEmpty       = source.ReasonEmpty
	ReasonReadError   = source.ReasonReadError
	ReasonInternal    = source.ReasonInternal
	ReasonNoBatch     = source.ReasonNoBatch
)

type state int

const (
	created state = iota
	started
	stopped
)

// Client runs one pipeline. All methods are safe for concurrent use.
type Client struct {
	cfg  *Config
	src  source.Source
	opts imaging.Options
	stat counters

	progress *resume.Tracker

	mu      sync.Mutex
	state   state
	cancel  context.CancelFunc
	ready   chan *Sample
	batches chan *Batch // instead of ready with batch_size
	wg      sync.WaitGroup
	failure error // a source failure, reported once the ready queue is drained
}

// NewFromJSON parses a JSON configuration and returns a client that has not started.
func NewFromJSON(data []byte) (*Client, error) {
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, err
	}
	return New(cfg)
}

// New returns a client for a validated configuration.
func New(cfg *Config) (*Client, error) {
	if cfg.Source == nil {
		return nil, &ConfigError{Key: "source_config", Msg: "is required"}
	}
	var c *Client // set before Start, so before any goroutine of the source runs
	src, err := cfg.Source.Open(source.Common{
		MaxFileBytes: cfg.MaxFileBytes,
		Fetchers:     fetchPool(cfg.Concurrency),
		Go: func(name string, fn func()) {
			go func() {
				defer func() {
					if r := recover(); r != nil {
						c.fail(fmt.Errorf("internal error in the source's %s (please report it): %v", name, r))
						c.mu.Lock()
						c.cancel()
						c.mu.Unlock()
					}
				}()
				fn()
			}()
		},
	})
	if err != nil {
		return nil, err
	}
	c, err = newClient(cfg, src)
	return c, err
}

// newClient runs cfg's pipeline over src (tests bring their own sources).
func newClient(cfg *Config, src source.Source) (*Client, error) {
	if err := imaging.Init(); err != nil {
		return nil, err
	}
	if cfg.Resume != nil {
		if r, ok := src.(source.Replayable); ok {
			if why := r.Unreplayable(); why != "" {
				return nil, &ConfigError{Key: "resume_state", Msg: "this source cannot resume exactly: " + why}
			}
		}
	}
	c := &Client{cfg: cfg, src: src, opts: imaging.Options{MaxPixels: DefaultMaxPixels}, progress: resume.NewTracker(cfg.Resume)}
	if ic := cfg.Image; ic != nil {
		c.opts = imaging.Options{
			CropAndResize: ic.CropAndResize,
			Buckets:       ic.Buckets,
			PreEncode:     ic.PreEncodeImages,
			MaxPixels:     ic.MaxPixels,
		}
	}
	return c, nil
}

// Config returns the validated configuration.
func (c *Client) Config() *Config { return c.cfg }

// Start launches the pipeline. Starting a started client does nothing; a stopped one cannot restart.
func (c *Client) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.state {
	case started:
		return nil
	case stopped:
		return fmt.Errorf("%w: a stopped client cannot be restarted; create a new one", ErrState)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.state = started
	c.stat.started.Store(time.Now().UnixNano())
	items := make(chan seqItem, c.cfg.PrefetchBufferSize)
	if c.cfg.BatchSize > 0 {
		c.batches = make(chan *Batch, max(1, c.cfg.SamplesBufferSize/c.cfg.BatchSize))
	} else {
		c.ready = make(chan *Sample, c.cfg.SamplesBufferSize)
	}
	var outcomes chan outcome // through the collector when order or batches matter
	if c.cfg.Deterministic || c.cfg.BatchSize > 0 {
		outcomes = make(chan outcome, c.cfg.Concurrency)
	}

	listed := make(chan struct{}) // closed when the lister returns: it may still send epoch ends
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(listed)
		defer close(items)
		defer func() {
			if r := recover(); r != nil {
				c.fail(fmt.Errorf("internal error in the source (please report it): %v", r))
			}
		}()
		c.list(ctx, items, outcomes)
	}()

	// Fetchers wait on IO (HTTP downloads, disk), decoders on the CPU: separate pools, so that a
	// slow download never leaves a core idle. fetched holds at most one sample per decoder ahead.
	fetched := make(chan fetchedItem, c.cfg.Concurrency)
	var fetchers, decoders sync.WaitGroup
	for i := 0; i < c.fetchers(); i++ {
		fetchers.Add(1)
		go func() {
			defer fetchers.Done()
			c.fetchLoop(ctx, items, fetched, outcomes)
		}()
	}
	for i := 0; i < c.cfg.Concurrency; i++ {
		decoders.Add(1)
		go func() {
			defer decoders.Done()
			c.decodeLoop(ctx, fetched, outcomes)
		}()
	}
	var collected sync.WaitGroup
	if outcomes != nil {
		collected.Add(1)
		go func() {
			defer collected.Done()
			c.collect(ctx, outcomes)
		}()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		fetchers.Wait()
		close(fetched)
		decoders.Wait()
		if outcomes != nil {
			<-listed
			close(outcomes)
			collected.Wait()
		}
		if c.batches != nil {
			close(c.batches)
		} else {
			close(c.ready)
		}
	}()
	return nil
}

// seqItem is a listed item with its place: epoch, position in the epoch's listing (seq) and in
// the run's (gseq, what the deterministic order follows).
type seqItem struct {
	source.Item
	epoch int
	seq   int64
	gseq  int64
}

// list runs the source's listing once per epoch, numbering the items. A resumed client skips
// the items its state says are done. Each epoch's end goes to the collector, if any, after the
// epoch's last item.
func (c *Client) list(ctx context.Context, items chan<- seqItem, outcomes chan<- outcome) {
	var gseq int64
	for epoch := c.progress.State().Epoch; c.cfg.Epochs == 0 || epoch < c.cfg.Epochs; epoch++ {
		if es, ok := c.src.(source.Epochs); ok {
			es.SetEpoch(epoch)
		}
		var seq, sent int64
		emit := func(it source.Item) bool {
			s := seq
			seq++
			if c.progress.IsDone(epoch, s) {
				return true
			}
			select {
			case items <- seqItem{Item: it, epoch: epoch, seq: s, gseq: gseq}:
				gseq++
				sent++
				c.stat.listed.Add(1)
				return true
			case <-ctx.Done():
				return false
			}
		}
		if err := c.src.List(ctx, emit, c.stat.skip); err != nil && ctx.Err() == nil {
			c.fail(err)
			return
		}
		if ctx.Err() != nil {
			return
		}
		c.progress.Listed(epoch, seq)
		if outcomes != nil {
			select {
			case outcomes <- outcome{end: true, epoch: epoch, total: sent, gseq: gseq}:
			case <-ctx.Done():
				return
			}
		}
		if seq == 0 {
			return // an empty source would loop forever
		}
	}
}

// FetchersPerWorker is the number of fetching goroutines per decoding worker (concurrency).
const FetchersPerWorker = 4

// fetchers is the size of the fetching pool. With concurrency 1 it is 1 too, so that samples
// arrive in the order the source lists them (a documented guarantee).
func (c *Client) fetchers() int { return fetchPool(c.cfg.Concurrency) }

func fetchPool(concurrency int) int {
	if concurrency == 1 {
		return 1
	}
	return FetchersPerWorker * concurrency
}

type fetchedItem struct {
	seqItem
	raw *source.Raw
}

// skipped reports an item that will not be delivered: done for the resume state, and, for the
// collector, released.
func (c *Client) skipped(ctx context.Context, it seqItem, outcomes chan<- outcome) bool {
	c.progress.Mark(it.epoch, it.seq)
	if outcomes == nil {
		return true
	}
	select {
	case outcomes <- outcome{gseq: it.gseq, epoch: it.epoch, seq: it.seq}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *Client) fetchLoop(ctx context.Context, items <-chan seqItem, out chan<- fetchedItem, outcomes chan<- outcome) {
	for it := range items {
		if ctx.Err() != nil {
			return
		}
		raw := c.safeFetch(ctx, it.Item)
		if raw == nil {
			if ctx.Err() != nil || !c.skipped(ctx, it, outcomes) {
				return
			}
			continue
		}
		select {
		case out <- fetchedItem{it, raw}:
		case <-ctx.Done():
			return
		}
	}
}

func (c *Client) decodeLoop(ctx context.Context, in <-chan fetchedItem, outcomes chan<- outcome) {
	for f := range in {
		if ctx.Err() != nil {
			return
		}
		s := c.safeDecode(f)
		if s == nil {
			if !c.skipped(ctx, f.seqItem, outcomes) {
				return
			}
			continue
		}
		s.epoch, s.seq = f.epoch, f.seq
		if outcomes != nil {
			select {
			case outcomes <- outcome{gseq: f.gseq, epoch: f.epoch, seq: f.seq, sample: s}:
			case <-ctx.Done():
				s.Free()
				return
			}
			continue
		}
		if !c.send(ctx, s) {
			return
		}
	}
}

// send puts a sample in the ready queue; false (the sample freed) when stopping.
func (c *Client) send(ctx context.Context, s *Sample) bool {
	select {
	case c.ready <- s:
		return true
	case <-ctx.Done():
		s.Free()
		return false
	}
}

// recoverAsSkip turns a panic into a skipped sample: a bug met by one sample must not take the
// host process down with it.
func (c *Client) recoverAsSkip(id string) {
	if r := recover(); r != nil {
		c.stat.skip(id, ReasonInternal, fmt.Errorf("internal error (please report it): %v", r))
	}
}

// safeFetch reads the bytes of it (unless listing already did); a failure is counted and reported.
func (c *Client) safeFetch(ctx context.Context, it source.Item) (raw *source.Raw) {
	defer c.recoverAsSkip(it.ID)
	raw, err := it.Raw, error(nil)
	if raw == nil {
		raw, err = c.src.Fetch(ctx, it)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopping: not the sample's fault
		}
		reason := ReasonReadError
		var sr interface{ SkipReason() string }
		switch {
		case errors.Is(err, source.ErrEmpty):
			reason = ReasonEmpty
		case errors.As(err, &sr):
			reason = sr.SkipReason()
		}
		c.stat.skip(it.ID, reason, err)
		return nil
	}
	c.stat.bytesRead.Add(int64(raw.Size()))
	return raw
}

// safeDecode processes one fetched sample; a failure is counted and reported, never fatal.
func (c *Client) safeDecode(f fetchedItem) (s *Sample) {
	defer c.recoverAsSkip(f.ID)
	s, err := c.decode(f.ID, f.raw)
	if err != nil {
		reason := ReasonDecodeError
		switch {
		case errors.Is(err, imaging.ErrTooLarge):
			reason = ReasonTooLarge
		case errors.Is(err, imaging.ErrEmpty):
			reason = ReasonEmpty
		}
		c.stat.skip(f.ID, reason, err)
		return nil
	}
	return s
}

// decode processes the main image, then the masks and additional images with the main image's
// bucket, so that a crop keeps them pixel-aligned with it. A sample without a main image (the
// dataroom source with require_images false) gets its masks and additional images in their own buckets.
func (c *Client) decode(id string, raw *source.Raw) (*Sample, error) {
	s := &Sample{ID: id}
	if !raw.NoImage {
		img, err := imaging.Process(raw.Image, &c.opts)
		if err != nil {
			return nil, err
		}
		s.Image = img
	}
	extra := func(kind ItemKind, members []source.Named) error {
		opts := c.opts
		opts.Mask, opts.PreEncode = kind == ItemMask, false
		if opts.CropAndResize && s.Image != nil {
			opts.Target = &bucket.Bucket{Width: s.Image.Width, Height: s.Image.Height}
		}
		for _, m := range members {
			im, err := imaging.Process(m.Data, &opts)
			if err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
			s.Items = append(s.Items, SampleItem{Name: m.Name, Kind: kind, Image: im})
		}
		return nil
	}
	if err := extra(ItemMask, raw.Masks); err != nil {
		s.Free()
		return nil, err
	}
	if err := extra(ItemAdditionalImage, raw.AdditionalImages); err != nil {
		s.Free()
		return nil, err
	}
	for _, b := range raw.Bytes {
		s.Items = append(s.Items, SampleItem{Name: b.Name, Kind: ItemBytes, Bytes: b.Data})
	}
	if len(raw.Meta) > 0 {
		var err error
		if s.Meta, err = json.Marshal(raw.Meta); err != nil {
			s.Free()
			return nil, fmt.Errorf("metadata: %w", err)
		}
	}
	return s, nil
}

// fail records the source's failure, reported by Next once the samples already made are served.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failure = err
}

// Next returns the next sample, waiting up to timeout (negative: forever). It returns ErrEnd once the
// source is exhausted or the limit reached, ErrTimeout when nothing was ready in time, and the source's
// error if it failed. The caller owns the returned sample.
func (c *Client) Next(timeout time.Duration) (*Sample, error) {
	if c.cfg.BatchSize > 0 {
		return nil, fmt.Errorf("%w: batch_size is set: take batches (NextBatch)", ErrState)
	}
	c.mu.Lock()
	ready := c.ready
	c.mu.Unlock()
	s, err := receive(c, ready, timeout, 1)
	if s != nil {
		c.progress.Mark(s.epoch, s.seq)
	}
	return s, err
}

// NextBatch is Next for a client with batch_size: the next batch of samples of one bucket. The
// limit counts samples; the batch that reaches it is delivered whole.
func (c *Client) NextBatch(timeout time.Duration) (*Batch, error) {
	if c.cfg.BatchSize == 0 {
		return nil, fmt.Errorf("%w: batch_size is not set: take samples (Next)", ErrState)
	}
	c.mu.Lock()
	batches := c.batches
	c.mu.Unlock()
	b, err := receive(c, batches, timeout, 0)
	if b != nil {
		c.stat.batches.Add(1)
		c.stat.served.Add(int64(len(b.Samples)))
		for _, s := range b.Samples {
			c.progress.Mark(s.epoch, s.seq)
		}
		if limit := int64(c.cfg.Limit); limit > 0 && c.stat.served.Load() >= limit {
			c.mu.Lock()
			c.cancel()
			c.mu.Unlock()
		}
	}
	return b, err
}

// receive takes the next item of ch for Next and NextBatch; count is what one item adds to the
// served counter within the limit (0: the caller counts).
func receive[T interface{ Free() }](c *Client, ch chan T, timeout time.Duration, count int64) (T, error) {
	var none T
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	switch st {
	case created:
		return none, fmt.Errorf("%w: the client is not started", ErrState)
	case stopped:
		return none, ErrEnd
	}
	limit := int64(c.cfg.Limit)
	if limit > 0 && c.stat.served.Load() >= limit {
		return none, ErrEnd
	}
	var v T
	var ok bool
	switch {
	case timeout < 0:
		v, ok = <-ch
	case timeout == 0:
		select {
		case v, ok = <-ch:
		default:
			return none, ErrTimeout
		}
	default:
		t := time.NewTimer(timeout)
		select {
		case v, ok = <-ch:
			t.Stop()
		case <-t.C:
			return none, ErrTimeout
		}
	}
	if !ok {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.failure != nil {
			return none, c.failure
		}
		return none, ErrEnd
	}
	if count == 0 {
		return v, nil
	}
	n := c.stat.served.Add(count)
	if limit > 0 && n > limit {
		c.stat.served.Add(-count)
		v.Free()
		return none, ErrEnd
	}
	if limit > 0 && n == limit {
		c.mu.Lock()
		c.cancel() // nothing more will be served: stop producing
		c.mu.Unlock()
	}
	return v, nil
}

// State returns the resume state: pass it as resume_state to a new client with the same
// configuration to continue where this one is (README "Exact resume").
func (c *Client) State() State { return c.progress.State() }

// Stop cancels the pipeline, frees the samples still queued and waits for every goroutine. Idempotent.
func (c *Client) Stop() {
	c.mu.Lock()
	if c.state != started {
		c.state = stopped
		c.mu.Unlock()
		return
	}
	c.state = stopped
	c.cancel()
	ready, batches := c.ready, c.batches
	c.mu.Unlock()
	if ready != nil {
		for s := range ready {
			s.Free()
		}
	} else {
		for b := range batches {
			b.Free()
		}
	}
	c.wg.Wait()
	if cl, ok := c.src.(io.Closer); ok {
		_ = cl.Close() // idle HTTP connections
	}
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	st := c.stat.snapshot()
	st.Epoch = c.progress.State().Epoch
	return st
}

// DrainSkips returns the reports of samples skipped since the last call.
func (c *Client) DrainSkips() []SkipReport { return c.stat.drain() }
