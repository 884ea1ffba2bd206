package datago

import (
	"sync"
	"sync/atomic"
	"time"
)

// Per-stage timings, always on. Each stage adds the time its workers spend on an item (two
// monotonic clock reads per item) to an atomic counter; one sampler goroutine per run reads the
// queues' lengths every sampleEvery and keeps a ring of snapshots, from which the recent window
// is computed. Nothing here takes a lock on the samples' path.

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

// stageClock accumulates one stage's busy time and items.
type stageClock struct {
	busy  atomic.Int64 // nanoseconds, summed over the stage's workers
	items atomic.Int64
}

// since adds the time since t0 and one item.
func (s *stageClock) since(t0 time.Time) {
	s.busy.Add(int64(time.Since(t0)))
	s.items.Add(1)
}

// stageSnap is the stages' counters at one instant, with the queues' occupancy summed so far.
type stageSnap struct {
	at    time.Duration // since the run started
	busy  [nStages]int64
	items [nStages]int64
	fill  [nQueues]float64 // sum of len/cap over the samples taken so far
	n     int64            // samples taken so far
}

// stageClocks is a client's stage timing.
type stageClocks struct {
	clock [nStages]stageClock

	// The consumer: time spent waiting inside Next, from its first call on.
	firstCall atomic.Int64 // unix nanoseconds of the first Next
	waited    atomic.Int64

	mu      sync.Mutex
	workers [nStages]int
	caps    [nQueues]int // 0: the queue is not part of this run
	start   time.Time
	total   stageSnap   // the latest
	ring    []stageSnap // the last recentWindow snapshots, oldest first
}

// wait records a Next call that waited from t0 for the ready queue.
func (s *stageClocks) wait(t0 time.Time) {
	if s.firstCall.Load() == 0 {
		s.firstCall.CompareAndSwap(0, t0.UnixNano())
	}
	s.waited.Add(int64(time.Since(t0)))
}

// queueLen reports a queue's length now.
type queueLen func() int

// sample runs for the whole run (spawned by the pipeline), until done or stop closes.
func (s *stageClocks) sample(queues [nQueues]queueLen, done, stop <-chan struct{}) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	var fill [nQueues]float64
	var n int64
	for k := 1; ; k++ {
		select {
		case <-done:
			return
		case <-stop:
			return
		case <-t.C:
		}
		n++
		for q, l := range queues {
			if l != nil && s.caps[q] > 0 {
				fill[q] += float64(l()) / float64(s.caps[q])
			}
		}
		if k%snapshotEvery == 0 {
			s.snapshot(fill, n)
		}
	}
}

func (s *stageClocks) snapshot(fill [nQueues]float64, n int64) {
	snap := stageSnap{fill: fill, n: n}
	s.mu.Lock()
	defer s.mu.Unlock()
	snap.at = time.Since(s.start)
	for i := range s.clock {
		snap.busy[i] = s.clock[i].busy.Load()
		snap.items[i] = s.clock[i].items.Load()
	}
	snap.busy[stConsumer] = s.consumerBusy(snap.at)
	s.total = snap
	if len(s.ring) == recentWindow {
		copy(s.ring, s.ring[1:])
		s.ring = s.ring[:recentWindow-1]
	}
	s.ring = append(s.ring, snap)
}

// consumerBusy is the consumer's time outside Next since its first call, at `at` into the run.
func (s *stageClocks) consumerBusy(at time.Duration) int64 {
	first := s.firstCall.Load()
	if first == 0 {
		return 0
	}
	since := s.start.Add(at).Sub(time.Unix(0, first))
	return max(0, int64(since)-s.waited.Load())
}

// begin sets the run's shape: each stage's workers and each queue's capacity (0: absent).
func (s *stageClocks) begin(workers [nStages]int, caps [nQueues]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.workers, s.caps, s.start = workers, caps, time.Now()
}

// StageStats is one stage's timing (README "Stage timings").
type StageStats struct {
	Workers           int     `json:"workers"`
	Items             int64   `json:"items"`
	BusyS             float64 `json:"busy_s"`             // summed over the workers
	Utilization       float64 `json:"utilization"`        // busy / (elapsed x workers), over the run
	RecentUtilization float64 `json:"recent_utilization"` // the same over the recent window
	RecentItemsPerS   float64 `json:"recent_items_per_s"`
	Queue             string  `json:"queue,omitempty"`   // the queue the stage feeds
	QueueCapacity     int     `json:"queue_capacity"`    // its capacity
	QueueFill         float64 `json:"queue_fill"`        // its mean occupancy (0..1) over the run
	RecentQueueFill   float64 `json:"recent_queue_fill"` // the same over the recent window
	WaitS             float64 `json:"wait_s,omitempty"`  // consumer: time spent waiting in Next
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
	now := time.Since(s.start)
	// The run's totals use the counters now; the occupancy the sampler's sums so far.
	cur := s.total
	cur.at = now
	for i := range s.clock {
		cur.busy[i] = s.clock[i].busy.Load()
		cur.items[i] = s.clock[i].items.Load()
	}
	cur.busy[stConsumer] = s.consumerBusy(now)
	base := stageSnap{}
	if len(s.ring) > 0 {
		base = s.ring[0]
	}
	last := cur
	if len(s.ring) > 0 {
		last = s.ring[len(s.ring)-1]
	}
	recent := last.at - base.at
	useRun := recent < minRecent
	if useRun {
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
			BusyS:   float64(cur.busy[i]) / 1e9,
		}
		if now > 0 {
			st.Utilization = float64(cur.busy[i]) / float64(now) / float64(w)
		}
		if recent > 0 {
			st.RecentUtilization = float64(last.busy[i]-base.busy[i]) / float64(recent) / float64(w)
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
			st.WaitS = float64(s.waited.Load()) / 1e9
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
