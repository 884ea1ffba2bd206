package datago

import (
	"context"
	"fmt"
	"sync"

	"github.com/datago-dev/datago/internal/config"
	"github.com/datago-dev/datago/internal/plan"
	"github.com/datago-dev/datago/internal/resume"
	"github.com/datago-dev/datago/internal/source"
)

// planned is a planned run (equal_steps): the whole catalog, from which each epoch's slots of this
// share are computed (package plan), and the slots of the epochs under way, for substitutes.
type planned struct {
	items        []source.Item // the catalog, sorted by key
	hashes       []uint64
	policy       plan.Policy
	shuffle      bool
	seed         int64
	world, share int
	info         resume.Plan

	mu     sync.Mutex
	shares map[int]plan.Share // by epoch: this share's slots
}

// maxSubstitutes bounds the items a decoder tries in place of a bad one.
const maxSubstitutes = 8

// newPlanned lists the catalog of a Cataloged source and resolves the resume state against it. It
// runs at construction, so that a state of another plan is a ConfigError there.
func newPlanned(c *Client) (*planned, *resume.State, error) {
	cat, ok := c.src.(source.Cataloged)
	if !ok {
		return nil, nil, &ConfigError{Key: "equal_steps", Msg: fmt.Sprintf("needs a source that lists every rank's items ahead (filesystem); %s cannot", c.cfg.SourceType)}
	}
	items, keys, err := cat.Catalog(context.Background(), c.stat.skip)
	if err != nil {
		return nil, nil, err
	}
	pl := &planned{items: items, hashes: plan.Hashes(keys), policy: plan.Pad, shares: map[int]plan.Share{}}
	if c.cfg.EqualSteps == config.EqualStepsDrop {
		pl.policy = plan.Drop
	}
	pl.share, pl.world = cat.Topology()
	pl.shuffle, pl.seed = cat.Shuffled()
	pl.info = resume.Plan{Items: len(keys), Digest: fmt.Sprintf("%016x", plan.Digest(keys)), Shuffle: pl.shuffle,
		EqualSteps: c.cfg.EqualSteps, BatchSize: c.cfg.BatchSize}
	if pl.shuffle {
		pl.info.Seed = pl.seed
	}
	st := c.cfg.Resume
	if st != nil {
		var cerr *ConfigError
		if st, cerr = resume.Resolve(st, pl.info, pl.world, pl.share); cerr != nil {
			return nil, nil, cerr
		}
	}
	return pl, st, nil
}

// slots computes this share's slots of epoch, after what earlier generations did in it.
func (pl *planned) slots(epoch int, prior []resume.PriorGen) plan.Share {
	gens := make([]plan.Gen, len(prior))
	for i, g := range prior {
		gens[i] = plan.Gen{World: g.World}
		for _, d := range g.Done {
			gens[i].Done = append(gens[i].Done, plan.Done{Share: d.Share, Full: d.Full, Below: d.Below, Extra: d.Extra})
		}
	}
	n := len(pl.items)
	rem := plan.Remaining(plan.Order(n, pl.shuffle, pl.seed, epoch), pl.hashes, n, gens, pl.policy)
	sh := plan.Split(rem, pl.hashes, pl.world, pl.policy)[pl.share]
	pl.mu.Lock()
	pl.shares[epoch] = sh
	delete(pl.shares, epoch-2) // decoders only look at the epochs in flight
	pl.mu.Unlock()
	return sh
}

// substitute is the k-th item tried in place of the bad item of slot seq: one of the share's own
// items after it, so that the share still delivers all its slots.
func (pl *planned) substitute(epoch int, seq int64, k int) (source.Item, bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	sh, ok := pl.shares[epoch]
	if !ok || sh.Own < 2 || k >= sh.Own {
		return source.Item{}, false
	}
	own := int64(sh.Own)
	return pl.items[sh.Slots[(seq%own+int64(k))%own]], true
}

// listPlanned is list for a planned run: each epoch, this share's slots not done yet.
func (p *pipeline) listPlanned(items chan<- seqItem, ends chan<- epochEnd) {
	c, ctx, pl := p.c, p.ctx, p.c.planned
	var gseq int64
	for epoch := c.progress.State().Epoch; c.cfg.Epochs == 0 || epoch < c.cfg.Epochs; epoch++ {
		sh := pl.slots(epoch, c.progress.Prior(epoch))
		c.stat.excess.Add(int64(sh.Excess))
		var sent int64
		for k, idx := range sh.Slots {
			if c.progress.IsDone(epoch, int64(k)) {
				continue
			}
			select {
			case items <- seqItem{Item: pl.items[idx], epoch: epoch, seq: int64(k), gseq: gseq, pad: k >= sh.Own}:
				gseq++
				sent++
				c.stat.listed.Add(1)
			case <-ctx.Done():
				return
			}
		}
		c.progress.Listed(epoch, int64(len(sh.Slots)))
		if ends != nil {
			select {
			case ends <- epochEnd{epoch: epoch, total: sent, gseq: gseq}:
			case <-ctx.Done():
				return
			}
		}
		if len(sh.Slots) == 0 && c.cfg.Epochs == 0 && c.progress.Prior(epoch) == nil {
			return // nothing for this share in a fresh epoch, so in none: an endless run would spin
		}
	}
}
