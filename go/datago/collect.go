package datago

import (
	"context"
	"fmt"

	"github.com/datago-dev/datago/internal/imaging"
)

// outcome is what became of one listed item (sample, or nil when it was skipped), or, with end
// set, the end of an epoch's listing: the lister sends it after the epoch's last item.
type outcome struct {
	gseq   int64 // position in the run's listing, across epochs
	epoch  int
	seq    int64
	sample *Sample

	end   bool
	total int64 // with end: items of the epoch sent into the pipeline
}

// Batch is BatchSize samples (fewer at the end of an epoch) whose images share one bucket,
// stacked in one C buffer. The samples keep their ID, metadata and original size; their images
// were moved into Images.
type Batch struct {
	Images  *imaging.Image // shape of one image; Len covers all of them
	Samples []*Sample
	Sizes   [][2]int // each sample's original width and height
}

// Free releases the batch's C memory; safe to call twice.
func (b *Batch) Free() {
	if b == nil {
		return
	}
	b.Images.Free()
	for _, s := range b.Samples {
		s.Free()
	}
}

type bucketKey struct{ w, h, c int }

// collector sits between the decoders and the ready queue when the order is deterministic or
// samples are batched. It releases outcomes in listing order (deterministic) or as they come,
// groups released samples by bucket into batches, and flushes an epoch's partial batches once
// every item of the epoch has been released.
type collector struct {
	c *Client

	next      int64 // deterministic: the gseq to release next
	held      map[int64]outcome
	ends      map[int64][]outcome // deterministic: epoch ends, by the gseq that follows them
	released  map[int]int64       // per epoch
	totals    map[int]int64
	buckets   map[int]map[bucketKey][]*Sample // per epoch
	inBuckets int64                           // samples waiting in partial batches
}

func (c *Client) collect(ctx context.Context, in <-chan outcome) {
	k := &collector{
		c:        c,
		held:     map[int64]outcome{},
		ends:     map[int64][]outcome{},
		released: map[int]int64{},
		totals:   map[int]int64{},
		buckets:  map[int]map[bucketKey][]*Sample{},
	}
	defer k.discard()
	for o := range in {
		if !k.accept(ctx, o) {
			return
		}
	}
	// The stream ended (source exhausted, or stopping): what is left goes out unless stopping.
	for e := range k.buckets {
		if !k.flush(ctx, e) {
			return
		}
	}
}

func (k *collector) accept(ctx context.Context, o outcome) bool {
	if !k.c.cfg.Deterministic {
		return k.release(ctx, o)
	}
	if o.end {
		k.ends[o.gseq] = append(k.ends[o.gseq], o)
	} else {
		k.held[o.gseq] = o
	}
	for {
		for _, e := range k.ends[k.next] {
			if !k.release(ctx, e) {
				return false
			}
		}
		delete(k.ends, k.next)
		h, ok := k.held[k.next]
		if !ok {
			return true
		}
		delete(k.held, k.next)
		k.next++
		if !k.release(ctx, h) {
			return false
		}
	}
}

// release handles one outcome in delivery order.
func (k *collector) release(ctx context.Context, o outcome) bool {
	if o.end {
		k.totals[o.epoch] = o.total
	} else {
		k.released[o.epoch]++
		if o.sample != nil && !k.add(ctx, o.sample) {
			return false
		}
	}
	if t, ok := k.totals[o.epoch]; ok && k.released[o.epoch] == t {
		delete(k.totals, o.epoch)
		delete(k.released, o.epoch)
		return k.flush(ctx, o.epoch)
	}
	return true
}

// add queues a sample, or puts it in its bucket and sends the bucket's batch once full.
func (k *collector) add(ctx context.Context, s *Sample) bool {
	size := k.c.cfg.BatchSize
	if size == 0 {
		return k.c.send(ctx, s)
	}
	if s.Image == nil || s.Image.Encoded {
		k.c.stat.skip(s.ID, ReasonNoBatch, fmt.Errorf("a sample without a main image cannot join a batch"))
		k.c.progress.Mark(s.epoch, s.seq)
		s.Free()
		return true
	}
	key := bucketKey{s.Image.Width, s.Image.Height, s.Image.Channels}
	byKey := k.buckets[s.epoch]
	if byKey == nil {
		byKey = map[bucketKey][]*Sample{}
		k.buckets[s.epoch] = byKey
	}
	byKey[key] = append(byKey[key], s)
	if len(byKey[key]) < size {
		if k.inBuckets++; k.inBuckets > k.c.stat.batchHeldMax.Load() {
			k.c.stat.batchHeldMax.Store(k.inBuckets)
		}
		return true
	}
	full := byKey[key]
	delete(byKey, key)
	k.inBuckets -= int64(len(full) - 1)
	return k.sendBatch(ctx, full)
}

// flush sends (or, with drop_last, drops) the partial batches of an epoch.
func (k *collector) flush(ctx context.Context, epoch int) bool {
	byKey := k.buckets[epoch]
	delete(k.buckets, epoch)
	for key, samples := range byKey {
		delete(byKey, key)
		k.inBuckets -= int64(len(samples))
		if k.c.cfg.DropLast {
			for _, s := range samples {
				k.c.stat.droppedLast.Add(1)
				k.c.progress.Mark(s.epoch, s.seq)
				s.Free()
			}
			continue
		}
		if !k.sendBatch(ctx, samples) {
			k.freeAll(byKey)
			return false
		}
	}
	return true
}

func (k *collector) sendBatch(ctx context.Context, samples []*Sample) bool {
	images := make([]*imaging.Image, len(samples))
	sizes := make([][2]int, len(samples))
	for i, s := range samples {
		images[i] = s.Image
		sizes[i] = [2]int{s.Image.OriginalWidth, s.Image.OriginalHeight}
	}
	stacked, err := imaging.Stack(images)
	if err != nil { // out of memory: the samples cannot be delivered
		for _, s := range samples {
			k.c.stat.skip(s.ID, ReasonInternal, err)
			k.c.progress.Mark(s.epoch, s.seq)
			s.Free()
		}
		return true
	}
	for _, s := range samples {
		s.Image = nil // moved into stacked
	}
	b := &Batch{Images: stacked, Samples: samples, Sizes: sizes}
	select {
	case k.c.batches <- b:
		return true
	case <-ctx.Done():
		b.Free()
		return false
	}
}

func (k *collector) freeAll(byKey map[bucketKey][]*Sample) {
	for _, samples := range byKey {
		for _, s := range samples {
			s.Free()
		}
	}
}

// discard frees whatever is still held when the collector returns.
func (k *collector) discard() {
	for _, o := range k.held {
		o.sample.Free()
	}
	for _, byKey := range k.buckets {
		k.freeAll(byKey)
	}
}
