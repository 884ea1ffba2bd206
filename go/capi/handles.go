package main

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/datago-dev/datago/datago"
)

// Go objects never cross the ABI: callers hold integer handles into these tables.
var (
	clients  = newTable[*datago.Client]("client")
	catalogs = newTable[*datago.Catalog]("catalog")
)

// lastHandle numbers the handles of every table, so that a client handle passed where a catalog's
// is expected is unknown rather than someone else's object.
var lastHandle atomic.Uint64

// table maps the handles of one kind of object to the objects.
type table[T any] struct {
	kind string
	mu   sync.Mutex
	m    map[uint64]T
}

func newTable[T any](kind string) *table[T] { return &table[T]{kind: kind, m: map[uint64]T{}} }

// add stores v under a new non-zero handle.
func (t *table[T]) add(v T) uint64 {
	h := lastHandle.Add(1)
	t.mu.Lock()
	t.m[h] = v
	t.mu.Unlock()
	return h
}

// get returns the object of h, or an ErrState error naming the handle.
func (t *table[T]) get(h uint64) (T, error) {
	t.mu.Lock()
	v, ok := t.m[h]
	t.mu.Unlock()
	if !ok {
		return v, fmt.Errorf("%w: unknown or freed %s handle %d", datago.ErrState, t.kind, h)
	}
	return v, nil
}

// remove forgets h and returns its object, if it had one.
func (t *table[T]) remove(h uint64) (T, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	v, ok := t.m[h]
	delete(t.m, h)
	return v, ok
}

// reporter is what clients and catalogs both report: counters and skip reports.
type reporter interface {
	Stats() datago.Stats
	DrainSkips() []datago.SkipReport
}

// skips drains r's skip reports; never nil, so that they marshal as a JSON array.
func skips(r reporter) []datago.SkipReport {
	if reports := r.DrainSkips(); reports != nil {
		return reports
	}
	return []datago.SkipReport{}
}
