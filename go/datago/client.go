package datago

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/datago-dev/datago/internal/faults"
	"github.com/datago-dev/datago/internal/imaging"
	"github.com/datago-dev/datago/internal/resume"
	"github.com/datago-dev/datago/internal/source"
)

// Version of the loader.
const Version = "0.1.0"

type lifecycle int

const (
	created lifecycle = iota
	started
	stopped
)

// Client runs one pipeline. All methods are safe for concurrent use.
type Client struct {
	cfg      *Config
	src      source.Source
	opts     imaging.Options
	stat     counters
	stages   stageClocks
	held     heldMarks // samples NextMany handed over, not yet delivered to the user
	progress *resume.Tracker
	faults   faults.Points
	planned  *planned // equal_steps: the catalog and this share's plan

	mu      sync.Mutex
	state   lifecycle
	run     *pipeline
	ready   chan *Sample // the ready queue; without batch_size
	batches chan *Batch  // the ready queue with batch_size
	failure error        // why the run failed, reported once the ready queue is drained
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
		Go:           func(name string, fn func()) { c.goSource(name, fn) },
	})
	if err != nil {
		return nil, err
	}
	c, err = newClient(cfg, src)
	return c, err
}

// goSource starts a goroutine for the source, in the current run: a source starts them while it
// lists, that is while the run is on.
func (c *Client) goSource(name string, fn func()) {
	c.mu.Lock()
	run := c.run
	c.mu.Unlock()
	run.goSource(name, fn)
}

// newClient runs cfg's pipeline over src (tests bring their own sources).
func newClient(cfg *Config, src source.Source) (*Client, error) {
	if err := imaging.Init(); err != nil {
		return nil, err
	}
	if cfg.Resume != nil && !cfg.Planned() { // a planned run's order is the catalog's, not the listing's
		if r, ok := src.(source.Replayable); ok {
			if why := r.Unreplayable(); why != "" {
				return nil, &ConfigError{Key: "resume_state", Msg: "this source cannot resume exactly: " + why}
			}
		}
	}
	c := &Client{cfg: cfg, src: src, opts: imaging.Options{MaxPixels: DefaultMaxPixels}, faults: faults.FromEnv()}
	if ic := cfg.Image; ic != nil {
		c.opts = imaging.Options{
			CropAndResize: ic.CropAndResize,
			Buckets:       ic.Buckets,
			PreEncode:     ic.PreEncodeImages,
			Format:        encodeFormats[ic.EncodeFormat],
			Quality:       max(1, ic.JPEGQuality), // libjpeg's floor: 0 encodes as 1
			Background:    &ic.AlphaBackground,
			KeepAlpha:     ic.KeepAlpha,
			Native:        !ic.ImageToRGB8,
			AlphaMask:     ic.AlphaMask != "",
			MaxPixels:     ic.MaxPixels,
		}
	}
	switch {
	case cfg.Planned():
		pl, st, err := newPlanned(c)
		if err != nil {
			return nil, err
		}
		c.planned, c.progress = pl, resume.NewTracker(st)
		var prior []resume.PriorEpoch
		if st != nil {
			prior = st.Prior
		}
		c.progress.Planned(pl.info, pl.world, pl.share, prior)
	case cfg.Resume != nil && cfg.Resume.Version != resume.Version:
		return nil, &ConfigError{Key: "resume_state", Msg: "is a planned state (taken with equal_steps or bucket_per_step): this configuration has neither"}
	default:
		c.progress = resume.NewTracker(cfg.Resume)
	}
	return c, nil
}

// encodeFormats maps image_config.encode_format to the imaging package's encoders.
var encodeFormats = map[string]imaging.Format{
	"jpeg": imaging.FormatJPEG, "png": imaging.FormatPNG, "webp": imaging.FormatWebP,
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
	c.state = started
	c.stat.started.Store(time.Now().UnixNano())
	if c.cfg.BatchSize > 0 {
		c.batches = make(chan *Batch, max(1, c.cfg.SamplesBufferSize/c.cfg.BatchSize))
	} else {
		c.ready = make(chan *Sample, c.cfg.SamplesBufferSize)
	}
	c.run = newPipeline(c)
	c.run.start()
	return nil
}

// fail records why the run failed (the first reason wins), reported by Next once the samples
// already made are served.
func (c *Client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failure == nil {
		c.failure = err
	}
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
	return receive(c, ready, timeout, true)
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
	b, err := receive(c, batches, timeout, true)
	if b != nil {
		c.stat.batches.Add(1)
	}
	return b, err
}

// State returns the resume state: pass it as resume_state to a new client with the same
// configuration to continue where this one is (README "Exact resume").
func (c *Client) State() State {
	st := c.progress.State()
	if seed, ok := c.cfg.Seed(); ok {
		st.Seed = &seed
	}
	return st
}

// StopGrace is how long Stop waits for the run's goroutines. A worker blocked in a read the kernel
// will not interrupt (a hung NFS or FUSE mount, a FIFO without a writer) is then abandoned: it is
// counted in Stats.Abandoned, and whatever it makes once its read returns is freed, never delivered.
const StopGrace = time.Second

// Stop cancels the pipeline, frees the samples still queued and waits up to StopGrace for every
// goroutine of the run. Idempotent.
func (c *Client) Stop() {
	c.mu.Lock()
	if c.state != started {
		c.state = stopped
		c.mu.Unlock()
		return
	}
	c.state = stopped
	run, ready, batches := c.run, c.ready, c.batches
	run.cancel()
	c.mu.Unlock()
	// The ready queue is drained (and the source closed) by a goroutine of its own, so that an
	// abandoned worker's late sample is still freed, and the source closed only once nothing uses it.
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		if ready != nil {
			for s := range ready {
				s.Free()
			}
		} else {
			for b := range batches {
				b.Free()
			}
		}
		<-run.ended
		if cl, ok := c.src.(io.Closer); ok {
			_ = cl.Close() // idle HTTP connections
		}
	}()
	t := time.NewTimer(StopGrace)
	defer t.Stop()
	select {
	case <-finished:
	case <-t.C:
		c.stat.abandoned.Store(run.alive.Load())
	}
}

// Stats returns a snapshot of the counters.
func (c *Client) Stats() Stats {
	st := c.stat.snapshot()
	st.Epoch = c.progress.State().Epoch
	if seed, ok := c.cfg.Seed(); ok {
		st.Seed = &seed
	}
	st.Stages, st.Bottleneck = c.stages.stages()
	return st
}

// DrainSkips returns the reports of samples skipped since the last call.
func (c *Client) DrainSkips() []SkipReport { return c.stat.drain() }
