package datago

import "github.com/datago-dev/datago/internal/source"

// list runs the source's listing once per epoch, numbering the items. A resumed client skips
// the items its state says are done. Each epoch's end is sent on ends (when not nil) after the
// epoch's last item.
func (p *pipeline) list(items chan<- seqItem, ends chan<- epochEnd) {
	c, ctx := p.c, p.ctx
	if c.planned != nil {
		p.listPlanned(items, ends)
		return
	}
	var gseq int64
	for epoch := c.progress.State().Epoch; c.cfg.Epochs == 0 || epoch < c.cfg.Epochs; epoch++ {
		if es, ok := c.src.(source.Epochs); ok {
			es.SetEpoch(epoch)
		}
		var seq, sent int64
		// The list stage is busy while the source works, not while emit waits for room in items.
		clock := &c.stages.clock[stList]
		emit := func(it source.Item) bool {
			s := seq
			seq++
			if c.progress.IsDone(epoch, s) {
				return true
			}
			clock.leave()
			defer clock.enter()
			select {
			case items <- seqItem{Item: it, epoch: epoch, seq: s, gseq: gseq}:
				gseq++
				sent++
				c.stat.listed.Add(1)
				return true
			case <-ctx.Done():
				return false
			}
		}
		clock.enter()
		err := c.src.List(ctx, emit, c.stat.skip)
		clock.pause()
		if err != nil && ctx.Err() == nil {
			c.fail(err)
			return
		}
		if ctx.Err() != nil {
			return
		}
		c.progress.Listed(epoch, seq)
		if ends != nil {
			select {
			case ends <- epochEnd{epoch: epoch, total: sent, gseq: gseq}:
			case <-ctx.Done():
				return
			}
		}
		if seq == 0 {
			return // an empty source would loop forever
		}
	}
}
