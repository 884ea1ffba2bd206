package datago

import (
	"errors"
	"fmt"

	"github.com/datago-dev/datago/internal/source"
)

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

// fetch is one fetcher: it reads each item's bytes (unless listing already did) and passes it on,
// with raw nil when that failed, so that the decoders account for every item.
func (p *pipeline) fetch(items <-chan seqItem, out chan<- fetchedItem) {
	for {
		var it seqItem
		select {
		case v, ok := <-items:
			if !ok {
				return
			}
			it = v
		case <-p.ctx.Done(): // a fetcher stuck upstream must not keep this one waiting
			return
		}
		p.c.stages.clock[stFetch].enter()
		f := fetchedItem{seqItem: it, raw: p.fetchOne(it.Item)}
		p.c.stages.clock[stFetch].leave()
		if f.raw == nil && p.ctx.Err() != nil {
			return
		}
		select {
		case out <- f:
		case <-p.ctx.Done():
			return
		}
	}
}

// fetchOne returns the bytes of it, or nil after reporting the skip: a failure, a panic included,
// costs one sample, never the run.
func (p *pipeline) fetchOne(it source.Item) (raw *source.Raw) {
	c := p.c
	defer func() {
		if r := recover(); r != nil {
			raw = nil
			c.skipPanic(it.ID, r)
		}
	}()
	p.faults.Hit("fetch")
	raw, err := it.Raw, error(nil)
	if raw == nil {
		raw, err = c.src.Fetch(p.ctx, it)
	}
	if err != nil {
		if p.ctx.Err() != nil {
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

// skipPanic reports a panic met by one sample as its skip (internal_error): a bug met by one
// sample must not end the run.
func (c *Client) skipPanic(id string, r any) {
	c.stat.skip(id, ReasonInternal, fmt.Errorf("internal error (please report it): %v", r))
}
