package datago

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// maxReports bounds the skip reports kept between two DrainSkips calls.
const maxReports = 1024

// SkipReport describes one sample that was skipped.
type SkipReport struct {
	ID      string `json:"id"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// Stats is a snapshot of a client's counters.
type Stats struct {
	Listed         int64                  `json:"listed"`
	Served         int64                  `json:"served"`
	Skipped        map[string]int64       `json:"skipped"`
	SkippedTotal   int64                  `json:"skipped_total"`
	BytesRead      int64                  `json:"bytes_read"`
	ReportsDropped int64                  `json:"reports_dropped"`
	Batches        int64                  `json:"batches"`        // with batch_size: batches served (their samples count in served)
	DroppedLast    int64                  `json:"dropped_last"`   // with drop_last: samples of partial batches dropped
	BatchHeldMax   int64                  `json:"batch_held_max"` // most samples ever waiting in partial batches
	Padded         int64                  `json:"padded"`         // equal_steps pad: padding samples delivered (repeats of the share's own items)
	Excess         int64                  `json:"excess"`         // equal_steps drop: items of this share left out of their epoch
	Substituted    int64                  `json:"substituted"`    // planned runs: bad items replaced by another of the share's own
	LeftOut        float64                `json:"left_out"`       // planned runs: excess over the items the plans dispatched to this share
	Epoch          int                    `json:"epoch"`          // the first epoch not yet complete
	ElapsedS       float64                `json:"elapsed_s"`
	Goroutines     int                    `json:"goroutines"`     // the whole process's, every client together: for leak checks
	Abandoned      int64                  `json:"abandoned"`      // goroutines Stop left blocked in a read (see StopGrace)
	Seed           *int64                 `json:"seed,omitempty"` // the shuffle seed in use (drawn when the config gave none)
	Stages         map[string]*StageStats `json:"stages"`         // per-stage timings (README "Stage timings")
	Bottleneck     string                 `json:"bottleneck"`     // source, decode, consumer, balanced; "" too early to tell
}

type counters struct {
	listed, served, bytesRead atomic.Int64
	batches, droppedLast      atomic.Int64
	batchHeldMax              atomic.Int64
	padded, excess, subst     atomic.Int64
	planned                   atomic.Int64 // items dispatched to this share by the plans of its epochs
	abandoned                 atomic.Int64
	started                   atomic.Int64 // unix nanoseconds

	mu      sync.Mutex
	skipped map[string]int64
	reports []SkipReport
	dropped int64
}

func (c *counters) skip(id, reason string, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.skipped == nil {
		c.skipped = map[string]int64{}
	}
	c.skipped[reason]++
	if len(c.reports) == maxReports {
		// Keep the most recent reports: drop the oldest.
		copy(c.reports, c.reports[1:])
		c.reports = c.reports[:maxReports-1]
		c.dropped++
	}
	c.reports = append(c.reports, SkipReport{ID: id, Reason: reason, Message: msg})
}

func (c *counters) drain() []SkipReport {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reports
	c.reports = nil
	return r
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Listed:       c.listed.Load(),
		Served:       c.served.Load(),
		BytesRead:    c.bytesRead.Load(),
		Batches:      c.batches.Load(),
		DroppedLast:  c.droppedLast.Load(),
		BatchHeldMax: c.batchHeldMax.Load(),
		Padded:       c.padded.Load(),
		Excess:       c.excess.Load(),
		Substituted:  c.subst.Load(),
		Abandoned:    c.abandoned.Load(),
		Skipped:      map[string]int64{},
		Goroutines:   runtime.NumGoroutine(),
	}
	if n := c.planned.Load(); n > 0 {
		s.LeftOut = float64(s.Excess) / float64(n)
	}
	if t := c.started.Load(); t != 0 {
		s.ElapsedS = time.Since(time.Unix(0, t)).Seconds()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, v := range c.skipped {
		s.Skipped[k] = v
		s.SkippedTotal += v
	}
	s.ReportsDropped = c.dropped
	return s
}
