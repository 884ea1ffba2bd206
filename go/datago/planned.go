package datago

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/datago-dev/datago/internal/bucket"
	"github.com/datago-dev/datago/internal/imaging"

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
	layout       plan.Layout
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
		return nil, nil, &ConfigError{Key: "equal_steps", Msg: fmt.Sprintf("needs a source that lists every rank's items ahead (filesystem, webdataset, dataroom); %s cannot", c.cfg.SourceType)}
	}
	items, keys, err := cat.Catalog(context.Background(), c.stat.skip)
	if err != nil {
		return nil, nil, err
	}
	pl := &planned{items: items, hashes: plan.Hashes(keys), shares: map[int]plan.Share{}}
	pl.layout = plan.Layout{Policy: plan.Pad, BatchSize: c.cfg.BatchSize, Aligned: c.cfg.BucketPerStep, DropLast: c.cfg.DropLast}
	if c.cfg.EqualSteps == config.EqualStepsDrop {
		pl.layout.Policy = plan.Drop
	}
	pl.share, pl.world = cat.Topology()
	pl.shuffle, pl.seed = cat.Shuffled()
	pl.info = resume.Plan{Items: len(keys), Digest: fmt.Sprintf("%016x", plan.Digest(keys)), Shuffle: pl.shuffle,
		EqualSteps: c.cfg.EqualSteps, BatchSize: c.cfg.BatchSize, BucketPerStep: c.cfg.BucketPerStep, DropLast: c.cfg.DropLast}
	if c.cfg.BatchSize > 0 {
		if pl.layout.Buckets, err = headerPass(c, items); err != nil {
			return nil, nil, err
		}
		pl.info.Buckets = fmt.Sprintf("%016x", bucketDigest(pl.layout.Buckets))
	}
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
	rem := pl.layout.Remaining(plan.Order(n, pl.shuffle, pl.seed, epoch), pl.hashes, n, gens)
	sh := pl.layout.Split(rem, pl.hashes, pl.world)[pl.share]
	pl.mu.Lock()
	pl.shares[epoch] = sh
	delete(pl.shares, epoch-2) // decoders only look at the epochs in flight
	pl.mu.Unlock()
	return sh
}

// substitute is the k-th item tried in place of the bad item of slot seq: one of the share's own
// items after it (of the same bucket, with batches), so that the share still delivers all its slots.
func (pl *planned) substitute(epoch int, seq int64, k int) (source.Item, bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	sh, ok := pl.shares[epoch]
	if !ok || sh.Own < 2 || seq >= int64(len(sh.Slots)) {
		return source.Item{}, false
	}
	own := int64(sh.Own)
	bad := sh.Slots[seq]
	for j, found := int64(1), 0; j < own; j++ {
		i := sh.Slots[(seq%own+j)%own]
		if i == bad || (pl.layout.BatchSize > 0 && pl.layout.Buckets[i] != pl.layout.Buckets[bad]) {
			continue
		}
		if found++; found == k {
			return pl.items[i], true
		}
	}
	return source.Item{}, false
}

// bucketOf is the planned bucket of slot seq (with batches), to check the decoded image against.
func (pl *planned) bucketOf(epoch int, seq int64) int32 {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	sh, ok := pl.shares[epoch]
	if !ok || pl.layout.BatchSize == 0 || seq >= int64(len(sh.Slots)) {
		return -1
	}
	return pl.layout.Buckets[sh.Slots[seq]]
}

// headHint is how much of a file the header pass reads first: JPEG markers (EXIF, ICC) may push
// the frame header further; then the whole file is read.
const headHint = 64 << 10

// headerPass learns every item's bucket before decoding, from its header: the size after EXIF
// orientation, as Process picks it. An item whose header cannot be read is skipped (reported once)
// and left out of the plan (-1). The reads run on the fetch pool's number of goroutines, each
// turning a panic into a failure.
func headerPass(c *Client, items []source.Item) ([]int32, error) {
	buckets := make([]int32, len(items))
	index := map[bucket.Bucket]int32{}
	for i, b := range c.opts.Buckets {
		index[b] = int32(i)
	}
	head, _ := c.src.(source.Headed)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failure atomic.Value
	for w := 0; w < c.fetchers(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if r := recover(); r != nil {
					failure.Store(fmt.Errorf("internal error in the header pass (please report it): %v", r))
				}
			}()
			for i := next.Add(1) - 1; i < int64(len(items)); i = next.Add(1) - 1 {
				buckets[i] = c.headerBucket(head, items[i], index)
			}
		}()
	}
	wg.Wait()
	if err, ok := failure.Load().(error); ok {
		return nil, err
	}
	return buckets, nil
}

func (c *Client) headerBucket(head source.Headed, it source.Item, index map[bucket.Bucket]int32) int32 {
	ctx := context.Background()
	var data []byte
	var err error
	var w, h int
	sized, listed := c.src.(source.Sized)
	if listed {
		w, h, listed = sized.Size(it)
	}
	switch {
	case listed:
	case head != nil:
		data, err = head.Head(ctx, it, headHint)
		if err == nil && data != nil {
			w, h, err = imaging.Header(data)
		}
	}
	if !listed && (head == nil || err != nil || data == nil) {
		var raw *source.Raw
		if raw, err = c.src.Fetch(ctx, it); err == nil {
			w, h, err = imaging.Header(raw.Image)
		}
	}
	if err == nil && c.opts.MaxPixels > 0 && int64(w)*int64(h) > c.opts.MaxPixels {
		c.stat.skip(it.ID, ReasonTooLarge, fmt.Errorf("%dx%d is more than max_pixels (%d)", w, h, c.opts.MaxPixels))
		return -1
	}
	if err != nil {
		c.stat.skip(it.ID, ReasonDecodeError, fmt.Errorf("header: %w", err))
		return -1
	}
	return index[bucket.Closest(c.opts.Buckets, w, h)]
}

func bucketDigest(buckets []int32) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range buckets {
		h ^= uint64(uint32(b))
		h *= 1099511628211
	}
	return h
}

// listPlanned is list for a planned run: each epoch, this share's slots not done yet.
func (p *pipeline) listPlanned(items chan<- seqItem, ends chan<- epochEnd) {
	c, ctx, pl := p.c, p.ctx, p.c.planned
	var gseq int64
	for epoch := c.progress.State().Epoch; c.cfg.Epochs == 0 || epoch < c.cfg.Epochs; epoch++ {
		sh := pl.slots(epoch, c.progress.Prior(epoch))
		c.stat.excess.Add(int64(sh.Excess))
		c.stat.planned.Add(int64(sh.Own + sh.Excess))
		batchOf, batchLen := batchIndex(sh)
		var sent int64
		for k, idx := range sh.Slots {
			if c.progress.IsDone(epoch, int64(k)) {
				continue
			}
			it := seqItem{Item: pl.items[idx], epoch: epoch, seq: int64(k), gseq: gseq, pad: k >= sh.Own}
			if batchOf != nil {
				it.batch, it.batchLen = batchOf[k], batchLen[batchOf[k]]
			}
			select {
			case items <- it:
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

// batchIndex maps each slot of sh to its planned batch, and each batch to its length (nil without
// batches).
func batchIndex(sh plan.Share) ([]int32, []int32) {
	if sh.Batches == nil {
		return nil, nil
	}
	of := make([]int32, len(sh.Slots))
	k := 0
	for b, n := range sh.Batches {
		for j := int32(0); j < n; j++ {
			of[k] = int32(b)
			k++
		}
	}
	return of, sh.Batches
}

// addPlanned puts a sample of a planned batch with the others of its batch, and sends the batch once
// it has them all.
func (k *collector) addPlanned(o outcome) bool {
	s := o.sample
	key := [2]int64{int64(o.epoch), int64(o.batch)}
	if k.planned == nil {
		k.planned = map[[2]int64][]*Sample{}
	}
	k.planned[key] = append(k.planned[key], s)
	if len(k.planned[key]) < int(o.batchLen) {
		if k.inBuckets++; k.inBuckets > k.p.c.stat.batchHeldMax.Load() {
			k.p.c.stat.batchHeldMax.Store(k.inBuckets)
		}
		return true
	}
	full := k.planned[key]
	delete(k.planned, key)
	k.inBuckets -= int64(len(full) - 1)
	return k.sendBatch(full)
}

// flushPlanned sends the planned batches of epoch still incomplete (an item skipped without a
// substitute), in batch order: shorter, but the samples arrive.
func (k *collector) flushPlanned(epoch int) bool {
	var keys [][2]int64
	for key := range k.planned {
		if key[0] == int64(epoch) {
			keys = append(keys, key)
		}
	}
	slices.SortFunc(keys, func(a, b [2]int64) int { return cmp.Compare(a[1], b[1]) })
	for _, key := range keys {
		samples := k.planned[key]
		delete(k.planned, key)
		k.inBuckets -= int64(len(samples))
		if !k.sendBatch(samples) {
			return false
		}
	}
	return true
}
