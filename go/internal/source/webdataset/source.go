// Package webdataset is the "webdataset" source: tar shards (optionally gzip-compressed) read as
// streams from local files or HTTP(S), whose consecutive members sharing a key form one sample.
package webdataset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/datago-dev/datago/internal/faults"
	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/source/httpretry"
	"github.com/datago-dev/datago/internal/storage"
)

// Config is source_config for "source_type": "webdataset".
type Config struct {
	Shards              []string // expanded shard locations: local paths, file:// or http(s):// URLs
	Shuffle             bool
	ShuffleBuffer       int
	Seed                int64
	SeedGiven           bool // source_config.seed was set
	ConcurrentDownloads int
	Rank                int
	WorldSize           int
	ImageKeys           []string // lowercased suffixes, in order of preference
	AuthToken           string   // sent as "Authorization: Bearer" to each shard's own host only; never printed
	// ReferenceImage (reference_image_type, the Rust loader's key) names the main image's member;
	// the sample's other image members are then decoded too, aligned with its crop: as masks when
	// their name says mask or seg, as additional images otherwise. Empty: ImageKeys decide, and
	// other members are delivered as bytes.
	ReferenceImage string
	Timeout        time.Duration
	MaxRetries     int
	RetryBackoff   time.Duration  // wait before the first retry of a shard request
	Storage        storage.Config // source_config.storage, for object-store shards
}

// Defaults of Config, documented in README.md.
const (
	defaultShuffleBuffer       = 1000
	defaultConcurrentDownloads = 8
	defaultTimeout             = 30 * time.Second
	defaultMaxRetries          = 5
	// defaultRetryBackoff is the wait before the first retry of a shard request; it doubles at
	// every consecutive failure, up to httpretry.MaxBackoff, with jitter.
	defaultRetryBackoff = 250 * time.Millisecond
)

// defaultImageKeys are the suffixes tried, in order, for a sample's image.
var defaultImageKeys = []string{"jpg", "jpeg", "png", "webp"}

// shardLocation classifies a shard: a local file (path set) or a remote URL (isHTTP: http(s), or an
// object store's, which the storage layer reads).
func shardLocation(shard string) (path string, isHTTP bool, err error) {
	scheme, _, found := strings.Cut(shard, "://")
	if !found || strings.ContainsAny(scheme, "/.") {
		return shard, false, nil
	}
	switch strings.ToLower(scheme) {
	case "http", "https":
		u, err := url.Parse(shard)
		if err != nil {
			return "", false, err
		}
		if u.Host == "" {
			return "", false, fmt.Errorf("%q has no host", shard)
		}
		return "", true, nil
	case "s3", "gs", "az", "hf":
		if err := storage.Check(shard); err != nil {
			return "", false, err
		}
		return "", true, nil
	case "file":
		u, err := url.Parse(shard)
		if err != nil {
			return "", false, err
		}
		if u.Host != "" && u.Host != "localhost" {
			return "", false, fmt.Errorf("%q: file URLs must name a local path (file:///path)", shard)
		}
		return u.Path, false, nil
	}
	return "", false, fmt.Errorf("%q: unsupported scheme %q (local paths, file://, http://, https://, s3://, gs://, az:// and hf:// are)", shard, scheme)
}

// Source serves the samples of WebDataset tar shards (optionally gzip-compressed), read as streams
// from local files or HTTP(S), concurrent_downloads shards at a time.
type Source struct {
	cfg       Config
	maxMember int64 // max_file_bytes: a larger tar member loses its sample
	goFn      func(name string, fn func())
	points    faults.Points
	client    *http.Client
	store     *storage.Store // nil without object-store shards
	epoch     int
}

// SetEpoch selects the epoch whose shuffle List draws (source.EpochSeed).
func (w *Source) SetEpoch(epoch int) { w.epoch = epoch }

// Unreplayable: without shuffle, samples of concurrently read shards come as they arrive.
func (w *Source) Unreplayable() string {
	if !w.cfg.Shuffle && w.cfg.ConcurrentDownloads > 1 {
		return "without shuffle, samples of concurrent_downloads > 1 shards come in arrival order; set shuffle or concurrent_downloads 1"
	}
	return ""
}

// Open returns the source of c, with its object-store prefixes (urls ending in "/") listed: the
// shards under them, in key order, take their place.
func (c Config) Open(common source.Common) (source.Source, error) {
	w := newSource(c, common)
	if w.store == nil {
		return w, nil
	}
	shards, err := w.listPrefixes(context.Background())
	if err != nil {
		return nil, err
	}
	w.cfg.Shards = shards
	return w, nil
}

// newSource returns the source of a parsed cfg: every value was checked by Parse.
func newSource(cfg Config, common source.Common) *Source {
	w := &Source{cfg: cfg, maxMember: common.MaxFileBytes, goFn: common.Go, points: faults.FromEnv(),
		client: newHTTPClient(cfg.Timeout, cfg.ConcurrentDownloads, cfg.AuthToken != "")}
	for _, s := range cfg.Shards {
		if storage.Remote(s) {
			w.store = storage.New(cfg.Storage, storage.Policy{Timeout: cfg.Timeout, MaxRetries: cfg.MaxRetries,
				Backoff: cfg.RetryBackoff, Conns: cfg.ConcurrentDownloads})
			break
		}
	}
	return w
}

// splitByKey reports whether samples (rather than shards) are dispatched to ranks: with fewer shards
// than ranks, every rank reads every shard and keeps the samples whose id hashes to it.
func (w *Source) splitByKey() bool { return len(w.cfg.Shards) < w.cfg.WorldSize }

// myShards lists this rank's shards in reading order: shard i belongs to rank i mod world_size (all of
// them when splitting by key), shuffled with the seed when shuffle is on.
func (w *Source) myShards(rng *rand.Rand) []string {
	var out []string
	for i, s := range w.cfg.Shards {
		if w.splitByKey() || i%w.cfg.WorldSize == w.cfg.Rank {
			out = append(out, s)
		}
	}
	if w.cfg.Shuffle {
		rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	}
	return out
}

// List reads this rank's shards, concurrent_downloads at a time, and emits their samples.
//
// Without shuffle, samples are emitted as they arrive from any open shard. With shuffle, the shards
// (in seeded order) are dealt to concurrent_downloads slots, slot k reading shards k, k+n, k+2n, ...;
// the slots are taken in turn, one sample each, and the samples mixed through a seeded buffer of
// shuffle_buffer: the order depends on the seed and the data only, not on timing.
func (w *Source) List(ctx context.Context, emit func(source.Item) bool, skip func(id, reason string, err error)) (err error) {
	rng := rand.New(rand.NewSource(source.EpochSeed(w.cfg.Seed, w.epoch)))
	shards := w.myShards(rng)
	if len(shards) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	dead := newDeadCheck(len(shards))
	var deadErr atomic.Pointer[error]
	defer func() { // runs last, once every reader has returned
		if e := deadErr.Load(); e != nil && err == nil {
			err = *e
		}
	}()
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	var skipMu sync.Mutex
	safeSkip := func(id, reason string, err error) {
		if ctx.Err() != nil {
			return // stopping: broken streams are not the data's fault
		}
		skipMu.Lock()
		defer skipMu.Unlock()
		skip(id, reason, err)
	}
	read := func(i int, send func(source.Item) bool) {
		if failure := w.readShard(ctx, shards[i], send, safeSkip, dead.worked); failure == nil {
			dead.worked()
		} else if e := dead.fail(i, shards[i], failure); e != nil {
			deadErr.Store(&e)
			cancel()
		}
	}
	n := min(w.cfg.ConcurrentDownloads, len(shards))
	sender := func(ch chan<- source.Item) func(source.Item) bool {
		return func(it source.Item) bool {
			select {
			case ch <- it:
				return true
			case <-ctx.Done():
				return false
			}
		}
	}

	if !w.cfg.Shuffle {
		out := make(chan source.Item, 2*n)
		var next atomic.Int64
		var readers sync.WaitGroup
		for k := 0; k < n; k++ {
			readers.Add(1)
			w.goFn("webdataset shard reader", func() {
				defer readers.Done()
				for ctx.Err() == nil {
					i := int(next.Add(1) - 1)
					if i >= len(shards) {
						return
					}
					read(i, sender(out))
				}
			})
		}
		wg.Add(1)
		w.goFn("webdataset reader closer", func() {
			defer wg.Done()
			readers.Wait()
			close(out)
		})
		for it := range out {
			if !emit(it) {
				return nil
			}
		}
		return nil
	}

	slots := make([]chan source.Item, n)
	for k := range slots {
		slots[k] = make(chan source.Item, 4)
		wg.Add(1)
		w.goFn("webdataset shard slot", func() {
			defer wg.Done()
			defer close(slots[k])
			for i := k; i < len(shards) && ctx.Err() == nil; i += n {
				read(i, sender(slots[k]))
			}
		})
	}
	buf := make([]source.Item, 0, w.cfg.ShuffleBuffer)
	for active := n; active > 0; {
		for k, ch := range slots {
			if ch == nil {
				continue
			}
			var it source.Item
			var ok bool
			select {
			case it, ok = <-ch:
			case <-ctx.Done():
				return nil
			}
			if !ok {
				slots[k] = nil
				active--
				continue
			}
			if len(buf) < cap(buf) {
				buf = append(buf, it)
				continue
			}
			j := rng.Intn(len(buf))
			it, buf[j] = buf[j], it
			if !emit(it) {
				return nil
			}
		}
	}
	rng.Shuffle(len(buf), func(i, j int) { buf[i], buf[j] = buf[j], buf[i] })
	for _, it := range buf {
		if !emit(it) {
			return nil
		}
	}
	return nil
}

// Fetch returns the bytes a streamed item carries, or reads a catalog item's (a planned run).
func (w *Source) Fetch(ctx context.Context, it source.Item) (*source.Raw, error) {
	if e, ok := it.Ref.(*entry); ok && it.Raw == nil {
		return w.fetchEntry(ctx, it, e)
	}
	if it.Raw == nil {
		return nil, errors.New("webdataset: item without data")
	}
	return it.Raw, nil
}

// openShard opens a shard as a stream of (possibly compressed) bytes.
func (w *Source) openShard(ctx context.Context, shard string) (io.ReadCloser, error) {
	path, isHTTP, err := shardLocation(shard)
	if err != nil {
		return nil, err
	}
	if storage.Remote(shard) {
		return w.store.Open(ctx, shard, ""), nil
	}
	if isHTTP {
		s := newHTTPStream(ctx, w.client, shard, w.cfg.Timeout, w.cfg.MaxRetries, w.cfg.RetryBackoff)
		s.token = w.cfg.AuthToken
		return s, nil
	}
	return os.Open(path)
}

// readShard streams one shard and sends its samples; problems are reported through skip. reached is
// called at its first sample; it returns the shard's error when the shard failed before giving any
// sample (both for the dead-list check).
func (w *Source) readShard(ctx context.Context, shard string, send func(source.Item) bool, skip func(string, string, error), reached func()) (failure error) {
	w.points.Hit("webdataset.shard")
	rc, err := w.openShard(ctx, shard)
	if err != nil {
		skip(shard, source.ReasonShardError, err)
		return err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(streamErrors{rc}, 256<<10)
	var tarStream io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			skip(shard, source.ReasonShardError, fmt.Errorf("gzip: %w", err))
			return nil // the shard was reached: its data is bad, not the list
		}
		tarStream = bufio.NewReaderSize(streamErrors{gzipErrors{zr}}, 256<<10)
	}
	delivered, groups := 0, 0
	end, err := walk(tarStream, w.maxMember, func(g *Group) bool {
		if groups++; groups == 1 {
			reached()
		}
		id := shard + "#" + g.key
		if w.splitByKey() && source.Rank(id, w.cfg.WorldSize) != w.cfg.Rank {
			return true
		}
		if g.lost != "" {
			skip(id, source.ReasonLost, errors.New(g.lost))
			return true
		}
		it, reason, err := w.item(shard, id, g)
		if err != nil {
			skip(id, reason, err)
			return true
		}
		delivered++
		return send(it)
	})
	switch end {
	case endClean:
		io.Copy(io.Discard, io.LimitReader(br, 1<<20)) // the end-of-archive padding: lets HTTP reuse the connection
	case endTruncated:
		skip(shard, source.ReasonShardError, fmt.Errorf("truncated shard, after %d samples", delivered))
	case endFailed:
		skip(shard, source.ReasonShardError, fmt.Errorf("%w (after %d samples of this shard)", err, delivered))
		if groups == 0 {
			return err
		}
	}
	return nil
}

// gzipErrors turns the decompressor's errors (corrupt data, bad checksum) into stream errors, except
// for a premature end, which is a truncated shard.
type gzipErrors struct{ r io.Reader }

func (g gzipErrors) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
		var se *streamError
		if !errors.As(err, &se) {
			err = &streamError{fmt.Errorf("gzip: %w", err)}
		}
	}
	return n, err
}

// item turns a complete group into an item, or says why it is skipped.
func (w *Source) item(shard, id string, g *Group) (source.Item, string, error) {
	if g.dup {
		return source.Item{}, source.ReasonDuplicateMember, fmt.Errorf("two members with suffix %q", g.dupName)
	}
	image := ""
	keys := w.cfg.ImageKeys
	if w.cfg.ReferenceImage != "" {
		keys = []string{w.cfg.ReferenceImage}
	}
	for _, k := range keys {
		if g.member(k) != nil {
			image = k
			break
		}
	}
	if image == "" {
		names := make([]string, len(g.members))
		for i, m := range g.members {
			names[i] = m.Name
		}
		return source.Item{}, source.ReasonMissingImage, fmt.Errorf("no member with suffix %s (members: %s)",
			strings.Join(keys, ", "), strings.Join(names, ", "))
	}
	raw := &source.Raw{Meta: map[string]any{"key": g.key, "shard": shard}}
	for _, m := range g.members {
		switch m.Name {
		case image:
			raw.Image = m.Data
			continue
		case "txt":
			raw.Meta["caption"] = string(m.Data)
			continue
		case "cls":
			label, err := strconv.ParseInt(strings.TrimSpace(string(m.Data)), 10, 64)
			if err != nil {
				return source.Item{}, source.ReasonBadMetadata, fmt.Errorf(".cls is not an integer: %q", httpretry.Truncate(string(m.Data), 40))
			}
			raw.Meta["label"] = label
			continue
		case "json":
			dec := json.NewDecoder(bytes.NewReader(m.Data))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				return source.Item{}, source.ReasonBadMetadata, fmt.Errorf(".json: %w", err)
			}
			if dec.More() {
				return source.Item{}, source.ReasonBadMetadata, errors.New(".json: trailing data after the JSON value")
			}
			if obj, ok := v.(map[string]any); ok {
				raw.Meta["attributes"] = obj
				continue
			}
			// Valid JSON that is not an object: delivered as raw bytes, like any other member.
		default:
			if w.cfg.ReferenceImage != "" && isImageMember(m.Name) {
				if isMaskMember(m.Name) {
					raw.Masks = append(raw.Masks, m)
				} else {
					raw.AdditionalImages = append(raw.AdditionalImages, m)
				}
				continue
			}
		}
		raw.Bytes = append(raw.Bytes, m)
	}
	if len(raw.Image) == 0 {
		return source.Item{}, source.ReasonEmpty, fmt.Errorf("member %q is empty", image)
	}
	return source.Item{ID: id, Path: shard, Raw: raw}, "", nil
}

// isImageMember reports whether a member's last suffix is an image format datago decodes.
func isImageMember(name string) bool {
	ext := name[strings.LastIndexByte(name, '.')+1:]
	switch strings.ToLower(ext) {
	case "jpg", "jpeg", "png", "webp", "bmp", "gif":
		return true
	}
	return false
}

// isMaskMember reports whether an image member is a mask: "mask.png", "seg.png", "fg_mask.png",
// "segmentation.png" (one channel, resized with nearest neighbour so no new levels appear).
func isMaskMember(name string) bool {
	base := strings.ToLower(name)
	if i := strings.LastIndexByte(base, '.'); i >= 0 {
		base = base[:i]
	}
	return strings.Contains(base, "mask") || strings.Contains(base, "seg")
}
