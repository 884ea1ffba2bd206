package datago

import (
	"fmt"
	"sync"
	"time"
)

// heldMarks are the resume marks of samples NextMany took from the ready queue that the caller
// has not yet handed to its user: the resume state counts them as queued, not delivered.
type heldMarks struct {
	mu    sync.Mutex
	marks []heldMark
}

type heldMark struct {
	epoch int
	seq   int64
	pad   bool // counted in Stats.Padded once delivered: a held sample the user never takes is not
}

// NextMany is Next for up to n samples in one call, for a caller that crosses an expensive
// boundary per call (the C ABI): it waits up to timeout for the first sample, then takes those
// already ready without waiting. An end or an error met after the first sample is returned by
// the next call. The samples are not yet delivered for the resume state: Delivered marks them,
// and every sample of the previous NextMany is marked delivered when it is called again.
func (c *Client) NextMany(timeout time.Duration, n int) ([]*Sample, error) {
	if c.cfg.BatchSize > 0 {
		return nil, fmt.Errorf("%w: batch_size is set: take batches (NextBatch)", ErrState)
	}
	c.Delivered(-1)
	c.mu.Lock()
	ready := c.ready
	c.mu.Unlock()
	var out []*Sample
	for len(out) < n {
		s, err := receive(c, ready, timeout, false)
		if err != nil {
			if len(out) > 0 {
				break
			}
			return nil, err
		}
		out = append(out, s)
		timeout = 0
	}
	c.held.mu.Lock()
	for _, s := range out {
		c.held.marks = append(c.held.marks, heldMark{s.epoch, s.seq, s.pad})
	}
	c.held.mu.Unlock()
	return out, nil
}

// Delivered marks the first n samples held since NextMany (all of them when n < 0) as delivered
// in the resume state.
func (c *Client) Delivered(n int) {
	c.held.mu.Lock()
	defer c.held.mu.Unlock()
	if n < 0 || n > len(c.held.marks) {
		n = len(c.held.marks)
	}
	for _, m := range c.held.marks[:n] {
		c.progress.Mark(m.epoch, m.seq)
		if m.pad {
			c.stat.padded.Add(1)
		}
	}
	c.held.marks = append(c.held.marks[:0], c.held.marks[n:]...)
}
