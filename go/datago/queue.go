package datago

import (
	"fmt"
	"time"

	"github.com/datago-dev/datago/internal/resume"
)

// delivery is what the ready queue holds: a sample, or a batch with batch_size.
type delivery interface {
	Free()
	size() int64            // samples it holds, counted against the limit
	done(p *resume.Tracker) // marks its samples delivered in the resume state
	padding() int64         // how many of its samples are padding (equal_steps pad)
}

func (s *Sample) padding() int64 {
	if s.pad {
		return 1
	}
	return 0
}

func (b *Batch) padding() int64 {
	var n int64
	for _, s := range b.Samples {
		n += s.padding()
	}
	return n
}

func (s *Sample) size() int64            { return 1 }
func (s *Sample) done(p *resume.Tracker) { p.Mark(s.epoch, s.seq) }
func (b *Batch) size() int64             { return int64(len(b.Samples)) }
func (b *Batch) done(p *resume.Tracker) {
	for _, s := range b.Samples {
		p.Mark(s.epoch, s.seq)
	}
}

// receive takes the next delivery from the ready queue ch, waiting up to timeout (negative:
// forever, 0: not at all). The limit counts samples: what reaches it is delivered whole, and
// stops the pipeline. With mark false the delivery is not marked in the resume state (the
// caller holds it: NextMany).
func receive[T delivery](c *Client, ch chan T, timeout time.Duration, mark bool) (T, error) {
	var none T
	c.mu.Lock()
	st := c.state
	c.mu.Unlock()
	switch st {
	case created:
		return none, fmt.Errorf("%w: the client is not started", ErrState)
	case stopped:
		return none, ErrEnd
	}
	limit := int64(c.cfg.Limit)
	if limit > 0 && c.stat.served.Load() >= limit {
		return none, ErrEnd
	}
	var v T
	var ok bool
	c.stages.waitIn()
	defer c.stages.waitOut()
	switch {
	case timeout < 0:
		v, ok = <-ch
	case timeout == 0:
		select {
		case v, ok = <-ch:
		default:
			return none, ErrTimeout
		}
	default:
		t := time.NewTimer(timeout)
		select {
		case v, ok = <-ch:
			t.Stop()
		case <-t.C:
			return none, ErrTimeout
		}
	}
	if !ok {
		// The queue's closer is done, but a goroutine that panicked may still be unwinding
		// towards its recover: the end is only clean once the whole run has returned.
		c.mu.Lock()
		run := c.run
		c.mu.Unlock()
		run.wait(StopGrace)
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.failure != nil {
			return none, c.failure
		}
		return none, ErrEnd
	}
	count := v.size()
	n := c.stat.served.Add(count)
	if limit > 0 && n-count >= limit { // another caller reached the limit first
		c.stat.served.Add(-count)
		v.Free()
		return none, ErrEnd
	}
	if mark {
		v.done(c.progress)
		c.stat.padded.Add(v.padding()) // else when the holder delivers it (Delivered)
	}
	c.stages.clock[stConsumer].state.Add(count << 32)
	if limit > 0 && n >= limit {
		c.mu.Lock()
		c.run.cancel() // nothing more will be served: stop producing
		c.mu.Unlock()
	}
	return v, nil
}
