package datago

import (
	"context"
	"errors"
	"fmt"

	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/source/filesystem"
)

// Catalog is map-style access to a filesystem source: its files sorted by path, and Get, which
// processes any list of them in parallel with the configuration's image processing. Rank and
// world size are ignored: a map-style dataset leaves the split to its sampler.
type Catalog struct {
	cfg   *Config
	items []source.Item
	src   *filesystem.Source // fetches the items (a remote root_path's objects through its store)
	stat  counters
}

// NewCatalog lists the tree of a filesystem configuration.
func NewCatalog(cfg *Config) (*Catalog, error) {
	fc, ok := cfg.Source.(filesystem.Config)
	if !ok {
		return nil, &ConfigError{Key: "source_type", Msg: fmt.Sprintf("map-style access needs the filesystem source, got %q", cfg.SourceType)}
	}
	fc.Rank, fc.WorldSize, fc.RandomSampling = 0, 1, false
	k := &Catalog{cfg: cfg}
	src := filesystem.New(fc, cfg.MaxFileBytes)
	if err := src.Check(context.Background()); err != nil {
		return nil, err // a *ConfigError for a refusal (wrong key, no such bucket, empty prefix)
	}
	items, err := src.All(context.Background(), k.stat.skip)
	if err != nil {
		return nil, err
	}
	k.items, k.src = items, src
	return k, nil
}

// Len is the number of files.
func (k *Catalog) Len() int { return len(k.items) }

// IDs are the files, in index order.
func (k *Catalog) IDs() []string {
	ids := make([]string, len(k.items))
	for i, it := range k.items {
		ids[i] = it.ID
	}
	return ids
}

// Get processes the files at indices (repeats allowed) with the configuration's concurrency and
// returns their samples in the same order; a file that cannot be read or decoded gets nil and is
// counted and reported in Stats and DrainSkips.
func (k *Catalog) Get(indices []int) ([]*Sample, error) {
	picked := make([]source.Item, len(indices))
	for i, x := range indices {
		if x < 0 || x >= len(k.items) {
			return nil, fmt.Errorf("%w: index %d out of range [0, %d)", ErrState, x, len(k.items))
		}
		picked[i] = k.items[x]
	}
	cfg := *k.cfg
	cfg.Epochs, cfg.Limit, cfg.BatchSize, cfg.Deterministic, cfg.Resume = 1, 0, 0, false, nil
	c, err := newClient(&cfg, &listSource{items: picked, fetch: k.src})
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, err
	}
	defer c.Stop()
	out := make([]*Sample, len(indices))
	for {
		s, err := c.Next(-1)
		if errors.Is(err, ErrEnd) {
			break
		}
		if err != nil {
			for _, s := range out {
				s.Free()
			}
			return nil, err
		}
		out[s.seq] = s
	}
	k.stat.served.Add(c.stat.served.Load())
	k.stat.bytesRead.Add(c.stat.bytesRead.Load())
	for _, r := range c.DrainSkips() {
		k.stat.skip(r.ID, r.Reason, errors.New(r.Message))
	}
	return out, nil
}

// Stats returns the counters of every Get so far.
func (k *Catalog) Stats() Stats {
	st := k.stat.snapshot()
	st.Listed = int64(len(k.items))
	st.ElapsedS = 0
	return st
}

// DrainSkips returns the reports of files skipped since the last call.
func (k *Catalog) DrainSkips() []SkipReport { return k.stat.drain() }

// listSource serves a fixed list of items, fetched by another source.
type listSource struct {
	items []source.Item
	fetch source.Source
}

func (l *listSource) List(ctx context.Context, emit func(source.Item) bool, _ func(string, string, error)) error {
	for _, it := range l.items {
		if ctx.Err() != nil || !emit(it) {
			return nil
		}
	}
	return nil
}

func (l *listSource) Fetch(ctx context.Context, it source.Item) (*source.Raw, error) {
	return l.fetch.Fetch(ctx, it)
}
