package datago

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/datago-dev/datago/internal/faults"
	"github.com/datago-dev/datago/internal/source"
)

// pipeline is one run of the stages, from Start to Stop:
//
//	list -> items -> fetch pool -> fetched -> decode pool -> ready            (plain)
//	                                                     \-> outcomes -> collect -> ready | batches
//	list -> ends (epoch ends) ------------------------------------------/
//
// Each channel has exactly one closer, the stage that sends on it (for a pool, the goroutine that
// waits for its workers), so the shutdown order follows from the graph. Every goroutine of the run,
// the sources' own included, is started by spawn: a panic there fails the client instead of killing
// the host process.
type pipeline struct {
	c      *Client
	ctx    context.Context
	cancel context.CancelFunc
	faults faults.Points
	wg     sync.WaitGroup // every goroutine of the run
	alive  atomic.Int64   // how many of them are running
	ended  chan struct{}  // closed once every goroutine of the run has returned
	closed chan struct{}  // closed with the ready queue: the stage sampler's end
}

// seqItem is a listed item with its place: epoch, position in the epoch's listing (seq) and in
// the run's (gseq, what the deterministic order follows).
type seqItem struct {
	source.Item
	epoch int
	seq   int64
	gseq  int64
	pad   bool // a padding slot of a planned run
	// batch is the slot's batch in a planned run with batches, of batchLen samples (0: none).
	batch, batchLen int32
}

// fetchedItem is an item with its bytes, or with raw nil when fetching failed (already reported).
type fetchedItem struct {
	seqItem
	raw *source.Raw
}

// outcome is what became of one listed item: its sample, or nil when it was skipped.
type outcome struct {
	seqItem
	sample *Sample
}

// epochEnd is the end of an epoch's listing: total items of the epoch went into the pipeline, the
// last with gseq end-1.
type epochEnd struct {
	epoch int
	total int64
	gseq  int64
}

func newPipeline(c *Client) *pipeline {
	ctx, cancel := context.WithCancel(context.Background())
	return &pipeline{c: c, ctx: ctx, cancel: cancel, faults: c.faults, ended: make(chan struct{}),
		closed: make(chan struct{})}
}

// start wires the stages and returns at once.
func (p *pipeline) start() {
	p.wire()
	go func() { // after wire, so the count only reaches 0 at the very end
		p.wg.Wait()
		close(p.ended)
	}()
}

// wait waits up to d for every goroutine of the run to return; false if some did not.
func (p *pipeline) wait(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.ended:
		return true
	case <-t.C:
		return false
	}
}

func (p *pipeline) wire() {
	cfg := p.c.cfg
	collecting := cfg.Deterministic || cfg.BatchSize > 0
	items := make(chan seqItem, cfg.PrefetchBufferSize)
	var ends chan epochEnd // only the collector needs epoch ends
	if collecting {
		ends = make(chan epochEnd, 1)
	}
	p.spawn("lister", func() {
		p.faults.Hit("list")
		p.list(items, ends)
	}, func() {
		close(items)
		if ends != nil {
			close(ends)
		}
	})

	// Fetchers wait on IO (HTTP downloads, disk), decoders on the CPU: separate pools, so that a
	// slow download never leaves a core idle. fetched holds at most one sample per decoder ahead.
	fetched := make(chan fetchedItem, cfg.Concurrency)
	p.pool("fetcher", p.c.fetchers(), func() { p.fetch(items, fetched) }, func() { close(fetched) })

	if !collecting {
		ready := p.c.ready
		p.timeStages(items, fetched, nil, 0)
		p.pool("decoder", cfg.Concurrency, func() {
			p.decode(fetched, func(o outcome) bool { return o.sample == nil || p.send(o.sample) })
		}, func() { close(ready); close(p.closed) })
		return
	}
	outcomes := make(chan outcome, cfg.Concurrency)
	p.timeStages(items, fetched, outcomes, 1)
	p.pool("decoder", cfg.Concurrency, func() {
		p.decode(fetched, func(o outcome) bool {
			select {
			case outcomes <- o:
				return true
			case <-p.ctx.Done():
				o.sample.Free()
				return false
			}
		})
	}, func() { close(outcomes) })
	p.spawn("collector", func() {
		p.faults.Hit("collect")
		p.collect(outcomes, ends)
	}, func() {
		if cfg.BatchSize > 0 {
			close(p.c.batches)
		} else {
			close(p.c.ready)
		}
		close(p.closed)
	})
}

// timeStages sets the stage clocks' shape for this run and starts their sampler.
func (p *pipeline) timeStages(items chan seqItem, fetched chan fetchedItem, outcomes chan outcome, collectors int) {
	c := p.c
	caps := [nQueues]int{qItems: cap(items), qFetched: cap(fetched), qOutcomes: cap(outcomes)}
	lens := [nQueues]queueLen{qItems: func() int { return len(items) }, qFetched: func() int { return len(fetched) },
		qOutcomes: func() int { return len(outcomes) }}
	if c.batches != nil {
		caps[qReady], lens[qReady] = cap(c.batches), func() int { return len(c.batches) }
	} else {
		caps[qReady], lens[qReady] = cap(c.ready), func() int { return len(c.ready) }
	}
	c.stages.begin([nStages]int{stList: 1, stFetch: c.fetchers(), stDecode: c.cfg.Concurrency,
		stCollect: collectors, stConsumer: 1}, caps)
	p.spawn("stage sampler", func() { c.stages.sample(lens, p.closed, p.ctx.Done()) })
}

// spawn runs fn in a goroutine of the run, then each of after (closing what fn sent on). A panic
// in fn fails the client and stops the run; the failure is recorded before after runs, so that a
// consumer that sees the channel closed also sees why.
func (p *pipeline) spawn(name string, fn func(), after ...func()) {
	p.wg.Add(1)
	p.alive.Add(1)
	go func() {
		defer p.wg.Done()
		defer p.alive.Add(-1)
		defer func() {
			for _, f := range after {
				f()
			}
		}()
		defer p.recover(name)
		fn()
	}()
}

// pool runs n workers and then done, once every worker has returned (a panicking one included):
// done closes the pool's output, so the pool is that channel's one closer.
func (p *pipeline) pool(name string, n int, worker func(), done func()) {
	var workers sync.WaitGroup
	workers.Add(n)
	for i := 0; i < n; i++ {
		p.spawn(name, worker, workers.Done)
	}
	p.spawn(name+" pool", workers.Wait, done)
}

// goSource is source.Common.Go: the goroutines a source starts run under the same policy.
func (p *pipeline) goSource(name string, fn func()) { p.spawn("source's "+name, fn) }

func (p *pipeline) recover(name string) {
	if r := recover(); r != nil {
		p.c.fail(fmt.Errorf("internal error in the %s (please report it): %v\n%s", name, r, debug.Stack()))
		p.cancel()
	}
}

// send puts a sample in the ready queue; false (the sample freed) when stopping.
func (p *pipeline) send(s *Sample) bool {
	select {
	case p.c.ready <- s:
		return true
	case <-p.ctx.Done():
		s.Free()
		return false
	}
}
