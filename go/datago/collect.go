package datago

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/datago-dev/datago/internal/imaging"
)

type bucketKey struct{ w, h, c int }

// collector sits between the decoders and the ready queue when the order is deterministic or
// samples are batched. It releases outcomes in listing order (deterministic) or as they come,
// groups released samples by bucket into batches, and flushes an epoch's partial batches once
// every item of the epoch has been released.
type collector struct {
	p       *pipeline
	ordered bool // release in listing order: deterministic, or planned batches (sent in plan order)

	next      int64 // deterministic: the gseq to release next
	held      map[int64]outcome
	ends      map[int64][]epochEnd // deterministic: epoch ends, by the gseq that follows them
	released  map[int]int64        // per epoch
	totals    map[int]int64
	buckets   map[int]map[bucketKey][]*Sample // per epoch
	planned   map[[2]int64][]*Sample          // planned batches being filled, by (epoch, batch)
	inBuckets int64                           // samples waiting in partial batches
}

// send is pipeline.send; the collector is not busy while it waits for room in the ready queue.
func (k *collector) send(s *Sample) bool {
	k.p.c.stages.clock[stCollect].pause()
	defer k.p.c.stages.clock[stCollect].resume()
	return k.p.send(s)
}

// collect runs the collector until both its inputs are closed or the run stops.
func (p *pipeline) collect(in <-chan outcome, ends <-chan epochEnd) {
	k := &collector{
		p:        p,
		ordered:  p.c.cfg.Deterministic || (p.c.planned != nil && p.c.cfg.BatchSize > 0),
		held:     map[int64]outcome{},
		ends:     map[int64][]epochEnd{},
		released: map[int]int64{},
		totals:   map[int]int64{},
		buckets:  map[int]map[bucketKey][]*Sample{},
	}
	defer k.discard()
	for in != nil || ends != nil {
		select {
		case <-p.ctx.Done():
			return
		case o, ok := <-in:
			if !ok {
				in = nil
				continue
			}
			clock := &p.c.stages.clock[stCollect]
			clock.enter()
			if k.ordered {
				k.held[o.gseq] = o
			} else if !k.release(o) {
				clock.leave()
				return
			}
			if k.ordered && !k.releaseInOrder() {
				clock.leave()
				return
			}
			clock.leave()
			continue
		case e, ok := <-ends:
			if !ok {
				ends = nil
				continue
			}
			if k.ordered {
				k.ends[e.gseq] = append(k.ends[e.gseq], e)
			} else if !k.end(e) {
				return
			}
		}
		if k.ordered && !k.releaseInOrder() {
			return
		}
	}
	// The stream ended (source exhausted, or stopping): what is left goes out unless stopping.
	epochs := make([]int, 0, len(k.buckets))
	for e := range k.buckets {
		epochs = append(epochs, e)
	}
	slices.Sort(epochs)
	for _, e := range epochs {
		if !k.flush(e) {
			return
		}
	}
}

// releaseInOrder releases what is held from k.next on, up to the first gap.
func (k *collector) releaseInOrder() bool {
	for {
		for _, e := range k.ends[k.next] {
			if !k.end(e) {
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
		if !k.release(h) {
			return false
		}
	}
}

// release handles one outcome in delivery order.
func (k *collector) release(o outcome) bool {
	k.released[o.epoch]++
	if o.sample != nil && o.batchLen > 0 { // a planned batch
		if !k.addPlanned(o) {
			return false
		}
	} else if o.sample != nil && !k.add(o.sample) {
		return false
	}
	return k.maybeFlush(o.epoch)
}

// end handles an epoch's end in delivery order.
func (k *collector) end(e epochEnd) bool {
	k.totals[e.epoch] = e.total
	return k.maybeFlush(e.epoch)
}

// maybeFlush flushes an epoch once its end has come and every one of its items was released.
func (k *collector) maybeFlush(epoch int) bool {
	if t, ok := k.totals[epoch]; ok && k.released[epoch] == t {
		delete(k.totals, epoch)
		delete(k.released, epoch)
		return k.flush(epoch)
	}
	return true
}

// add queues a sample, or puts it in its bucket and sends the bucket's batch once full.
func (k *collector) add(s *Sample) bool {
	c := k.p.c
	size := c.cfg.BatchSize
	if size == 0 {
		return k.send(s)
	}
	if s.Image == nil || s.Image.Encoded {
		c.stat.skip(s.ID, ReasonNoBatch, fmt.Errorf("a sample without a main image cannot join a batch"))
		c.progress.Mark(s.epoch, s.seq)
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
		if k.inBuckets++; k.inBuckets > c.stat.batchHeldMax.Load() {
			c.stat.batchHeldMax.Store(k.inBuckets)
		}
		return true
	}
	full := byKey[key]
	delete(byKey, key)
	k.inBuckets -= int64(len(full) - 1)
	return k.sendBatch(full)
}

// flush sends (or, with drop_last, drops) the partial batches of an epoch, in the order their
// buckets were started, so that a deterministic run repeats its sequence of batches exactly.
func (k *collector) flush(epoch int) bool {
	c := k.p.c
	if !k.flushPlanned(epoch) {
		return false
	}
	byKey := k.buckets[epoch]
	delete(k.buckets, epoch)
	keys := make([]bucketKey, 0, len(byKey))
	for key := range byKey {
		keys = append(keys, key)
	}
	slices.SortFunc(keys, func(a, b bucketKey) int { return cmp.Compare(byKey[a][0].seq, byKey[b][0].seq) })
	for _, key := range keys {
		samples := byKey[key]
		delete(byKey, key)
		k.inBuckets -= int64(len(samples))
		if c.cfg.DropLast {
			for _, s := range samples {
				c.stat.droppedLast.Add(1)
				c.progress.Mark(s.epoch, s.seq)
				s.Free()
			}
			continue
		}
		if !k.sendBatch(samples) {
			freeBuckets(byKey)
			return false
		}
	}
	return true
}

func (k *collector) sendBatch(samples []*Sample) bool {
	c := k.p.c
	images := make([]*imaging.Image, len(samples))
	sizes := make([][2]int, len(samples))
	for i, s := range samples {
		images[i] = s.Image
		sizes[i] = [2]int{s.Image.OriginalWidth, s.Image.OriginalHeight}
	}
	stacked, err := imaging.Stack(images)
	if err != nil { // out of memory: the samples cannot be delivered
		for _, s := range samples {
			c.stat.skip(s.ID, ReasonInternal, err)
			c.progress.Mark(s.epoch, s.seq)
			s.Free()
		}
		return true
	}
	for _, s := range samples {
		s.Image = nil // moved into stacked
	}
	b := &Batch{Images: stacked, Samples: samples, Sizes: sizes}
	k.p.c.stages.clock[stCollect].pause()
	defer k.p.c.stages.clock[stCollect].resume()
	select {
	case c.batches <- b:
		return true
	case <-k.p.ctx.Done():
		b.Free()
		return false
	}
}

func freeBuckets(byKey map[bucketKey][]*Sample) {
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
		freeBuckets(byKey)
	}
	freeBuckets(map[bucketKey][]*Sample{{}: flatten(k.planned)})
}

func flatten(m map[[2]int64][]*Sample) []*Sample {
	var all []*Sample
	for _, samples := range m {
		all = append(all, samples...)
	}
	return all
}
