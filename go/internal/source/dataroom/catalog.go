package dataroom

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/source"
)

// Catalog pages through the server's listing of every rank's images (the same filters, no
// partition), asking for each image's width and height too, and returns them sorted by id. With
// random_sampling it is a ConfigError: random pages do not list each image once.
func (d *Source) Catalog(ctx context.Context, skip func(string, string, error)) ([]source.Item, []string, error) {
	if d.cfg.RandomSampling {
		return nil, nil, &confread.Error{Key: "source_config.random_sampling", Msg: "a planned run (equal_steps, bucket_per_step) lists every image once, which the server's random pages cannot (they are drawn anew and repeat); remove random_sampling"}
	}
	all := d.cfg
	all.WorldSize, all.Rank = 1, 0
	query := queryOf(all)
	for i := range query {
		if query[i].key == "fields" {
			query[i].value += ",width,height"
		}
	}
	// At construction, before the client's run exists to start goroutines: a panic of the pager is
	// the catalog's error.
	var failure atomic.Pointer[error]
	spawn := func(_ string, fn func()) {
		go func() {
			defer func() {
				if r := recover(); r != nil {
					err := fmt.Errorf("internal error in the dataroom pager (please report it): %v", r)
					failure.Store(&err)
				}
			}()
			fn()
		}()
	}
	var items []source.Item
	err := d.records(ctx, spawn, query, func(it source.Item) bool { items = append(items, it); return true }, skip)
	if e := failure.Load(); e != nil {
		err = *e
	}
	if err != nil {
		return nil, nil, err
	}
	sort.Slice(items, func(i, j int) bool { return items[i].ID < items[j].ID })
	keys := make([]string, 0, len(items))
	out := items[:0]
	for _, it := range items {
		// The listing's own check only compares neighbouring pages.
		if len(keys) > 0 && keys[len(keys)-1] == it.ID {
			skip(it.ID, source.ReasonDuplicate, fmt.Errorf("dataroom: id %q returned twice by the server", it.ID))
			continue
		}
		out = append(out, it)
		keys = append(keys, it.ID)
	}
	return out, keys, nil
}

// Topology is source_config's rank and world_size.
func (d *Source) Topology() (int, int) { return d.cfg.Rank, d.cfg.WorldSize }

// Shuffled: a planned dataroom run serves the listing in id order every epoch.
func (d *Source) Shuffled() (bool, int64) { return false, 0 }

// Size is the image's width and height as the listing gave them.
func (d *Source) Size(it source.Item) (int, int, bool) {
	rec, ok := it.Ref.(*Record)
	if !ok || rec == nil || rec.Width <= 0 || rec.Height <= 0 {
		return 0, 0, false
	}
	return rec.Width, rec.Height, true
}
