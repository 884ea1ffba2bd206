package source

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
)

// WebDatasetConfig is source_config for "source_type": "webdataset".
type WebDatasetConfig struct {
	Shards              []string // expanded shard locations: local paths, file:// or http(s):// URLs
	Shuffle             bool
	ShuffleBuffer       int
	Seed                int64
	ConcurrentDownloads int
	Rank                int
	WorldSize           int
	ImageKeys           []string // lowercased suffixes, in order of preference
	Timeout             time.Duration
	MaxRetries          int
	RetryBackoff        time.Duration // 0: DefaultWDSRetryBackoff
	MaxMemberSize       int64         // 0: DefaultWDSMaxMemberSize
}

// Defaults of WebDatasetConfig, documented in README.md.
const (
	DefaultShuffleBuffer       = 1000
	DefaultConcurrentDownloads = 8
	DefaultWDSTimeout          = 30 * time.Second
	DefaultMaxRetries          = 5
)

// DefaultImageKeys are the suffixes tried, in order, for a sample's image.
var DefaultImageKeys = []string{"jpg", "jpeg", "png", "webp"}

// Skip reasons of the WebDataset source, reported in stats.
const (
	ReasonShardError      = "shard_error"      // a shard could not be read (to its end)
	ReasonLost            = "lost"             // a sample lost with a broken, truncated or corrupt part of a shard
	ReasonMissingImage    = "missing_image"    // a sample without a member named by image_keys
	ReasonBadMetadata     = "bad_metadata"     // a .cls that is not an integer, a .json that is not JSON
	ReasonDuplicateMember = "duplicate_member" // two members of one sample with the same suffix
)

// ShardLocation classifies a shard: a local file (path set) or an http(s) URL (isHTTP).
func ShardLocation(shard string) (path string, isHTTP bool, err error) {
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
	return "", false, fmt.Errorf("%q: unsupported scheme %q (local paths, file://, http:// and https:// are)", shard, scheme)
}

// WebDataset serves the samples of WebDataset tar shards (optionally gzip-compressed), read as streams
// from local files or HTTP(S), concurrent_downloads shards at a time.
type WebDataset struct {
	cfg    WebDatasetConfig
	client *http.Client
	epoch  int
}

// SetEpoch selects the epoch whose shuffle List draws (EpochSeed).
func (w *WebDataset) SetEpoch(epoch int) { w.epoch = epoch }

// Unreplayable: without shuffle, samples of concurrently read shards come as they arrive.
func (w *WebDataset) Unreplayable() string {
	if !w.cfg.Shuffle && w.cfg.ConcurrentDownloads > 1 {
		return "without shuffle, samples of concurrent_downloads > 1 shards come in arrival order; set shuffle or concurrent_downloads 1"
	}
	return ""
}

// NewWebDataset returns the WebDataset source of cfg (already validated).
func NewWebDataset(cfg WebDatasetConfig) *WebDataset {
	if cfg.ConcurrentDownloads < 1 {
		cfg.ConcurrentDownloads = 1
	}
	if cfg.WorldSize < 1 {
		cfg.WorldSize = 1
	}
	if cfg.ShuffleBuffer < 1 {
		cfg.ShuffleBuffer = 1
	}
	if len(cfg.ImageKeys) == 0 {
		cfg.ImageKeys = DefaultImageKeys
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultWDSTimeout
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = DefaultWDSRetryBackoff
	}
	if cfg.MaxMemberSize <= 0 {
		cfg.MaxMemberSize = DefaultWDSMaxMemberSize
	}
	return &WebDataset{cfg: cfg, client: newWDSHTTPClient(cfg.Timeout, cfg.ConcurrentDownloads)}
}

// splitByKey reports whether samples (rather than shards) are dispatched to ranks: with fewer shards
// than ranks, every rank reads every shard and keeps the samples whose id hashes to it.
func (w *WebDataset) splitByKey() bool { return len(w.cfg.Shards) < w.cfg.WorldSize }

// myShards lists this rank's shards in reading order: shard i belongs to rank i mod world_size (all of
// them when splitting by key), shuffled with the seed when shuffle is on.
func (w *WebDataset) myShards(rng *rand.Rand) []string {
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
func (w *WebDataset) List(ctx context.Context, emit func(Item) bool, skip func(id, reason string, err error)) error {
	rng := rand.New(rand.NewSource(EpochSeed(w.cfg.Seed, w.epoch)))
	shards := w.myShards(rng)
	if len(shards) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
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
	n := min(w.cfg.ConcurrentDownloads, len(shards))
	sender := func(ch chan<- Item) func(Item) bool {
		return func(it Item) bool {
			select {
			case ch <- it:
				return true
			case <-ctx.Done():
				return false
			}
		}
	}

	if !w.cfg.Shuffle {
		out := make(chan Item, 2*n)
		var next atomic.Int64
		var readers sync.WaitGroup
		for k := 0; k < n; k++ {
			readers.Add(1)
			go func() {
				defer readers.Done()
				for ctx.Err() == nil {
					i := int(next.Add(1) - 1)
					if i >= len(shards) {
						return
					}
					w.readShard(ctx, shards[i], sender(out), safeSkip)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			readers.Wait()
			close(out)
		}()
		for it := range out {
			if !emit(it) {
				return nil
			}
		}
		return nil
	}

	slots := make([]chan Item, n)
	for k := range slots {
		slots[k] = make(chan Item, 4)
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			defer close(slots[k])
			for i := k; i < len(shards) && ctx.Err() == nil; i += n {
				w.readShard(ctx, shards[i], sender(slots[k]), safeSkip)
			}
		}(k)
	}
	buf := make([]Item, 0, w.cfg.ShuffleBuffer)
	for active := n; active > 0; {
		for k, ch := range slots {
			if ch == nil {
				continue
			}
			var it Item
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

// Fetch is never called: every item carries its bytes.
func (w *WebDataset) Fetch(_ context.Context, it Item) (*Raw, error) {
	if it.Raw == nil {
		return nil, errors.New("webdataset: item without data")
	}
	return it.Raw, nil
}

// openShard opens a shard as a stream of (possibly compressed) bytes.
func (w *WebDataset) openShard(ctx context.Context, shard string) (io.ReadCloser, error) {
	path, isHTTP, err := ShardLocation(shard)
	if err != nil {
		return nil, err
	}
	if isHTTP {
		return newWDSHTTPStream(ctx, w.client, shard, w.cfg.Timeout, w.cfg.MaxRetries, w.cfg.RetryBackoff), nil
	}
	return os.Open(path)
}

// readShard streams one shard and sends its samples; problems are reported through skip.
func (w *WebDataset) readShard(ctx context.Context, shard string, send func(Item) bool, skip func(string, string, error)) {
	rc, err := w.openShard(ctx, shard)
	if err != nil {
		skip(shard, ReasonShardError, err)
		return
	}
	defer rc.Close()
	br := bufio.NewReaderSize(wdsStreamErrors{rc}, 256<<10)
	var tarStream io.Reader = br
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			skip(shard, ReasonShardError, fmt.Errorf("gzip: %w", err))
			return
		}
		tarStream = bufio.NewReaderSize(wdsStreamErrors{wdsGzipErrors{zr}}, 256<<10)
	}
	delivered := 0
	end, err := wdsWalk(tarStream, w.cfg.MaxMemberSize, func(g *wdsGroup) bool {
		id := shard + "#" + g.key
		if w.splitByKey() && Rank(id, w.cfg.WorldSize) != w.cfg.Rank {
			return true
		}
		if g.lost != "" {
			skip(id, ReasonLost, errors.New(g.lost))
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
	case wdsEndClean:
		io.Copy(io.Discard, io.LimitReader(br, 1<<20)) // the end-of-archive padding: lets HTTP reuse the connection
	case wdsEndTruncated:
		skip(shard, ReasonShardError, fmt.Errorf("truncated shard, after %d samples", delivered))
	case wdsEndFailed:
		skip(shard, ReasonShardError, fmt.Errorf("%w (after %d samples of this shard)", err, delivered))
	}
}

// wdsGzipErrors turns the decompressor's errors (corrupt data, bad checksum) into stream errors, except
// for a premature end, which is a truncated shard.
type wdsGzipErrors struct{ r io.Reader }

func (g wdsGzipErrors) Read(p []byte) (int, error) {
	n, err := g.r.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
		var se *wdsStreamError
		if !errors.As(err, &se) {
			err = &wdsStreamError{fmt.Errorf("gzip: %w", err)}
		}
	}
	return n, err
}

// item turns a complete group into an item, or says why it is skipped.
func (w *WebDataset) item(shard, id string, g *wdsGroup) (Item, string, error) {
	if g.dup {
		return Item{}, ReasonDuplicateMember, fmt.Errorf("two members with suffix %q", g.dupName)
	}
	image := ""
	for _, k := range w.cfg.ImageKeys {
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
		return Item{}, ReasonMissingImage, fmt.Errorf("no member with suffix %s (members: %s)",
			strings.Join(w.cfg.ImageKeys, ", "), strings.Join(names, ", "))
	}
	raw := &Raw{Meta: map[string]any{"key": g.key, "shard": shard}}
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
				return Item{}, ReasonBadMetadata, fmt.Errorf(".cls is not an integer: %q", wdsTruncate(m.Data, 40))
			}
			raw.Meta["label"] = label
			continue
		case "json":
			dec := json.NewDecoder(bytes.NewReader(m.Data))
			dec.UseNumber()
			var v any
			if err := dec.Decode(&v); err != nil {
				return Item{}, ReasonBadMetadata, fmt.Errorf(".json: %w", err)
			}
			if dec.More() {
				return Item{}, ReasonBadMetadata, errors.New(".json: trailing data after the JSON value")
			}
			if obj, ok := v.(map[string]any); ok {
				raw.Meta["attributes"] = obj
				continue
			}
			// Valid JSON that is not an object: delivered as raw bytes, like any other member.
		}
		raw.Bytes = append(raw.Bytes, m)
	}
	if len(raw.Image) == 0 {
		return Item{}, ReasonEmpty, fmt.Errorf("member %q is empty", image)
	}
	return Item{ID: id, Path: shard, Raw: raw}, "", nil
}

func wdsTruncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
