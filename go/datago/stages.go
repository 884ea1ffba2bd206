package datago

import (
	"sync"
	"sync/atomic"
	"time"
)

// Per-stage timings, always on. A stage's workers count themselves in and out of an item (one
// atomic add each way, on the stage's own cache line; no clock read, which costs up to 250 ns on
// a VM), and one sampler goroutine per run reads those counts and the queues' lengths every
// sampleEvery: busy time is the number of workers inside an item at each tick times the time
// between ticks, a sampling estimate that is right on average and costs a sample a few
// nanoseconds. The sampler keeps a ring of snapshots, from which the recent window is computed.

const (
	sampleEvery   = 20 * time.Millisecond
	snapshotEvery = 5                      // samples per snapshot: one every 100 ms
	recentWindow  = 50                     // snapshots in the recent window: 5 s
	minRecent     = 500 * time.Millisecond // a shorter window than this falls back to the run
	bottleneckMin = 200 * time.Millisecond // no verdict on less than this
	busyHigh      = 0.75                   // a pool this busy is saturated
	fullQueue     = 0.5                    // the ready queue this full: the consumer is behind
	starvedQueue  = 0.25                   // the decoders' input this empty: they wait for the source
)

// Stage indices, in pipeline order.
const (
	stList = iota
	stFetch
	stDecode
	stCollect
	stConsumer
	nStages
)

var stageNames = [nStages]string{"list", "fetch", "decode", "collect", "consumer"}

// Queue indices: the channel after each stage (the ready queue after decode or collect).
const (
	qItems = iota
	qFetched
	qOutcomes
	qReady
	nQueues
)

var queueNames = [nQueues]string{"items", "fetched", "outcomes", "ready"}

// stageClock counts one stage's workers inside an item (the low 32 bits) and its items (the
// high ones): one atomic add per call.
type stageClock struct {
	state atomic.Int64
	_     [56]byte // one cache line per stage: the stages' workers run on different cores
}

// enter and leave bracket one item's work; pause and resume a wait inside it.
func (s *stageClock) enter()  { s.state.Add(1) }
func (s *stageClock) leave()  { s.state.Add(1<<32 - 1) }
func (s *stageClock) pause()  { s.state.Add(-1) }
func (s *stageClock) resume() { s.state.Add(1) }

// read returns the workers inside an item and the items so far; a pause outside an item (the
// collector's final flush) reads as no worker.
func (s *stageClock) read() (active, items int64) {
	v := s.state.Load() + 1<<31 // the low half as an offset count, so that a -1 does not borrow
	return max(0, v&(1<<32-1)-1<<31), v >> 32
}

// stageSnap is the stages' counters at one instant, with the queues' occupancy summed so far.
type stageSnap struct {
	at    time.Duration    // since the run started
	busy  [nStages]float64 // nanoseconds, estimated from the ticks
	items [nStages]int64
	fill  [nQueues]float64 // sum of len/cap over the ticks so far
	n     int64            // ticks so far

	waited float64 // consumer: nanoseconds with a caller waiting in Next
}

// stageClocks is a client's stage timing.
type stageClocks struct {
	clock [nStages]stageClock

	// The consumer: callers waiting inside Next (the consumer is busy when none is), from the
	// first call on.
	called atomic.Bool

	mu      sync.Mutex
	workers [nStages]int
	caps    [nQueues]int // 0: the queue is not part of this run
	start   time.Time
	total   stageSnap   // the latest
	ring    []stageSnap // the last recentWindow snapshots, oldest first
}

// waitIn and waitOut bracket a Next call's wait for the ready queue.
func (s *stageClocks) waitIn() {
	if !s.called.Load() {
		s.called.Store(true)
	}
	s.clock[stConsumer].enter()
}

func (s *stageClocks) waitOut() { s.clock[stConsumer].pause() }

// queueLen reports a queue's length now.
type queueLen func() int

// sample runs for the whole run (spawned by the pipeline), until done or stop closes.
func (s *stageClocks) sample(queues [nQueues]queueLen, done, stop <-chan struct{}) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	cur := stageSnap{}
	prev := time.Now()
	defer func() { s.snapshot(cur) }() // the totals cover the whole run
	for k := 1; ; k++ {
		select {
		case <-done:
			return
		case <-stop:
			return
		case now := <-t.C:
			dt := float64(now.Sub(prev))
			prev = now
			cur.n++
			for i := range s.clock {
				n, _ := s.clock[i].read()
				active := float64(n)
				if i == stConsumer { // busy when nobody waits in Next
					if !s.called.Load() {
						continue
					}
					if active > 0 {
						cur.waited += dt
						continue
					}
					active = 1
				}
				cur.busy[i] += max(0, min(active, float64(max(s.workers[i], 1)))) * dt
			}
			for q, l := range queues {
				if l != nil && s.caps[q] > 0 {
					cur.fill[q] += float64(l()) / float64(s.caps[q])
				}
			}
			if k%snapshotEvery == 0 {
				s.snapshot(cur)
			}
		}
	}
}

func (s *stageClocks) snapshot(snap stageSnap) {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap.at = time.Since(s.start)
	for i := range s.clock {
		_, snap.items[i] = s.clock[i].read()
	}
	s.total = snap
	if len(s.ring) == recentWindow {
		copy(s.ring, s.ring[1:])
		s.ring = s.ring[:recentWindow-1]
	}
	s.ring = append(s.ring, snap)
}

// begin sets the run's shape: each stage's workers and each queue's capacity (0: absent).
func (s *stageClocks) begin(workers [nStages]int, caps [nQueues]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workers, s.caps, s.start = workers, caps, time.Now()
}

// StageStats is one stage's timing (README "Stage timings").
type StageStats struct {
	Workers           int      `json:"workers"`
	Items             int64    `json:"items"`
	BusyS             float64  `json:"busy_s"`             // summed over the workers
	Utilization       float64  `json:"utilization"`        // busy / (elapsed x workers), over the run
	RecentUtilization float64  `json:"recent_utilization"` // the same over the recent window
	RecentItemsPerS   float64  `json:"recent_items_per_s"`
	Queue             string   `json:"queue,omitempty"`   // the queue the stage feeds
	QueueCapacity     int      `json:"queue_capacity"`    // its capacity
	QueueFill         float64  `json:"queue_fill"`        // its mean occupancy (0..1) over the run
	RecentQueueFill   float64  `json:"recent_queue_fill"` // the same over the recent window
	WaitS             *float64 `json:"wait_s,omitempty"`  // consumer only: time spent waiting in Next
}

// Bottleneck verdicts.
const (
	BottleneckSource   = "source"
	BottleneckDecode   = "decode"
	BottleneckConsumer = "consumer"
	BottleneckBalanced = "balanced"
	BottleneckUnknown  = "" // not enough of the run yet
)

// stages returns the stage table and the verdict; empty before the run has started.
func (s *stageClocks) stages() (map[string]*StageStats, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.start.IsZero() {
		return nil, BottleneckUnknown
	}
	// The run's totals: busy time and occupancy up to the last snapshot, items now.
	cur := s.total
	now := cur.at
	for i := range s.clock {
		_, cur.items[i] = s.clock[i].read()
	}
	base := stageSnap{}
	if len(s.ring) > 0 {
		base = s.ring[0]
	}
	last := cur
	if len(s.ring) > 0 {
		last = s.ring[len(s.ring)-1]
	}
	recent := last.at - base.at
	if recent < minRecent {
		base, last, recent = stageSnap{}, cur, now
	}
	out := map[string]*StageStats{}
	queueOf := [nStages]int{stList: qItems, stFetch: qFetched, stDecode: qOutcomes, stCollect: qReady, stConsumer: -1}
	if s.caps[qOutcomes] == 0 { // no collector: the decoders feed the ready queue
		queueOf[stDecode] = qReady
	}
	for i, name := range stageNames {
		w := s.workers[i]
		if w == 0 {
			continue
		}
		st := &StageStats{
			Workers: w,
			Items:   cur.items[i],
			BusyS:   cur.busy[i] / 1e9,
		}
		if now > 0 {
			st.Utilization = cur.busy[i] / float64(now) / float64(w)
		}
		if recent > 0 {
			st.RecentUtilization = (last.busy[i] - base.busy[i]) / float64(recent) / float64(w)
			st.RecentItemsPerS = float64(last.items[i]-base.items[i]) / recent.Seconds()
		}
		if q := queueOf[i]; q >= 0 && s.caps[q] > 0 {
			st.Queue, st.QueueCapacity = queueNames[q], s.caps[q]
			if cur.n > 0 {
				st.QueueFill = cur.fill[q] / float64(cur.n)
			}
			if dn := last.n - base.n; dn > 0 {
				st.RecentQueueFill = (last.fill[q] - base.fill[q]) / float64(dn)
			} else {
				st.RecentQueueFill = st.QueueFill
			}
		}
		if i == stConsumer {
			waited := cur.waited / 1e9
			st.WaitS = &waited
		}
		out[name] = st
	}
	if q := s.caps[qReady]; q > 0 {
		r := &StageStats{Queue: queueNames[qReady], QueueCapacity: q}
		if cur.n > 0 {
			r.QueueFill = cur.fill[qReady] / float64(cur.n)
		}
		r.RecentQueueFill = r.QueueFill
		if dn := last.n - base.n; dn > 0 {
			r.RecentQueueFill = (last.fill[qReady] - base.fill[qReady]) / float64(dn)
		}
		r.Items = cur.items[stConsumer]
		out["ready"] = r
	}
	if now < bottleneckMin || out["consumer"] == nil || out["consumer"].Items == 0 {
		return out, BottleneckUnknown
	}
	return out, verdict(out)
}

// verdict is the bottleneck rule (README "Stage timings"), on the recent window:
//  1. the ready queue at least half full: the pipeline is ahead of the consumer -> consumer;
//  2. else the decoders at least 75% busy -> decode;
//  3. else the decoders' input at most a quarter full (they wait for bytes) -> source;
//  4. else balanced.
func verdict(st map[string]*StageStats) string {
	ready := st["ready"]
	switch {
	case ready != nil && ready.RecentQueueFill >= fullQueue:
		return BottleneckConsumer
	case st["decode"] != nil && st["decode"].RecentUtilization >= busyHigh:
		return BottleneckDecode
	case st["fetch"] != nil && st["fetch"].RecentQueueFill <= starvedQueue:
		return BottleneckSource
	}
	return BottleneckBalanced
}
