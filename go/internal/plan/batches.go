package plan

import "slices"

// Layout is how a planned run turns the items of an epoch into shares' sequences: samples (Split), or,
// with BatchSize, batches of one bucket each, from every item's bucket known before decoding.
type Layout struct {
	Policy    Policy
	BatchSize int     // 0: samples
	Buckets   []int32 // with BatchSize: each catalog item's bucket; -1 for an item that cannot be planned
	Aligned   bool    // bucket_per_step: every share's k-th batch is of one bucket and one size
	DropLast  bool
}

// Split is Split for the layout: with BatchSize, the slots of each Share are its batches one after the
// other (Share.Batches their lengths), and every share has the same number of batches.
func (l *Layout) Split(rem []int32, hashes []uint64, world int) []Share {
	if l.BatchSize == 0 {
		return Split(rem, hashes, world, l.Policy)
	}
	plannable := make([]int32, 0, len(rem))
	for _, i := range rem {
		if l.Buckets[i] >= 0 {
			plannable = append(plannable, i)
		}
	}
	if l.Aligned {
		return l.aligned(plannable, world)
	}
	return l.perShare(plannable, hashes, world)
}

// Remaining is the package's Remaining for the layout.
func (l *Layout) Remaining(order []int32, hashes []uint64, n int, gens []Gen) []int32 {
	return remaining(order, n, gens, func(rem []int32, world int) []Share { return l.Split(rem, hashes, world) })
}

// batches groups items (in order) by bucket into batches as the collector would: a batch goes out when
// its bucket has BatchSize items, and at the end the partial batches follow in the order their buckets
// started (or are left out with DropLast; their count is returned).
func (l *Layout) batches(items []int32) (out [][]int32, left int) {
	open := map[int32][]int32{}
	for _, i := range items {
		b := l.Buckets[i]
		open[b] = append(open[b], i)
		if len(open[b]) == l.BatchSize {
			out = append(out, open[b])
			delete(open, b)
		}
	}
	partial := make([][]int32, 0, len(open))
	for _, batch := range open {
		partial = append(partial, batch)
	}
	pos := map[int32]int{}
	for k, i := range items {
		pos[i] = k
	}
	slices.SortFunc(partial, func(a, b []int32) int { return pos[a[0]] - pos[b[0]] })
	for _, batch := range partial {
		if l.DropLast {
			left += len(batch)
		} else {
			out = append(out, batch)
		}
	}
	return out, left
}

// perShare is equal steps with batches: each share batches its own items (the hash rule), then the
// shares' batch counts are equalised by the policy: Pad repeats whole batches of the share's own
// (same shapes), Drop leaves out the last batches of the longer shares.
func (l *Layout) perShare(rem []int32, hashes []uint64, world int) []Share {
	own := make([][]int32, world)
	for _, i := range rem {
		s := int(hashes[i] % uint64(world))
		own[s] = append(own[s], i)
	}
	batches := make([][][]int32, world)
	left := make([]int, world)
	var all [][]int32
	lo, hi := -1, 0
	for s := range own {
		batches[s], left[s] = l.batches(own[s])
		all = append(all, batches[s]...)
		if lo < 0 || len(batches[s]) < lo {
			lo = len(batches[s])
		}
		hi = max(hi, len(batches[s]))
	}
	shares := make([]Share, world)
	for s := range shares {
		sh := &shares[s]
		sh.Excess = left[s]
		mine := batches[s]
		if l.Policy == Drop {
			for _, b := range mine[lo:] {
				sh.Excess += len(b)
			}
			mine = mine[:lo]
		}
		for _, b := range mine {
			sh.Slots = append(sh.Slots, b...)
			sh.Batches = append(sh.Batches, int32(len(b)))
		}
		sh.Own = len(sh.Slots)
		for k := 0; l.Policy == Pad && len(sh.Batches) < hi; k++ {
			var b []int32
			if len(mine) > 0 {
				b = mine[k%len(mine)]
			} else { // nothing of its own: repeat the others' batches
				b = all[(s+k)%len(all)]
			}
			sh.Slots = append(sh.Slots, b...)
			sh.Batches = append(sh.Batches, int32(len(b)))
		}
	}
	return shares
}

// aligned is bucket_per_step: a step is world batches of one bucket, one per share, each of BatchSize
// items (the bucket's items taken in the epoch's order, world × BatchSize at a time); a bucket's
// remainder L makes one last step of world batches of L / world items (none with DropLast), the
// L mod world left over are left out. Steps follow the epoch order of their first item, so every share
// computes the same schedule and yields the same number of steps, each sample at most once.
func (l *Layout) aligned(rem []int32, world int) []Share {
	pos := make(map[int32]int, len(rem))
	byBucket := map[int32][]int32{}
	var order []int32 // buckets in the order they first appear
	for k, i := range rem {
		pos[i] = k
		b := l.Buckets[i]
		if _, ok := byBucket[b]; !ok {
			order = append(order, b)
		}
		byBucket[b] = append(byBucket[b], i)
	}
	type step struct {
		first int
		items []int32 // world batches of size
		size  int
	}
	var steps []step
	shares := make([]Share, world)
	leftOver := 0
	for _, b := range order {
		items := byBucket[b]
		full := world * l.BatchSize
		for len(items) >= full {
			steps = append(steps, step{first: pos[items[0]], items: items[:full], size: l.BatchSize})
			items = items[full:]
		}
		if m := len(items) / world; m > 0 && !l.DropLast {
			steps = append(steps, step{first: pos[items[0]], items: items[:m*world], size: m})
			items = items[m*world:]
		}
		leftOver += len(items)
	}
	slices.SortFunc(steps, func(a, b step) int { return a.first - b.first })
	for _, st := range steps {
		for s := range shares {
			shares[s].Slots = append(shares[s].Slots, st.items[s*st.size:(s+1)*st.size]...)
			shares[s].Batches = append(shares[s].Batches, int32(st.size))
		}
	}
	for s := range shares {
		shares[s].Own = len(shares[s].Slots)
		shares[s].Excess = leftOver / world
		if s < leftOver%world {
			shares[s].Excess++
		}
	}
	return shares
}
