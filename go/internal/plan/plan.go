// Package plan is the epoch plan of a cluster run (README "Training", equal steps and elastic
// resume): from the whole catalog (every rank's items, sorted by key) every share computes the same
// seeded, topology-independent epoch order, the items still to do after the generations (topologies)
// already run in the epoch, and its own sequence of slots, equalised across shares by the policy.
// Pure functions: no IO, no goroutines.
package plan

import (
	"math/rand"

	"github.com/datago-dev/datago/internal/source"
)

// Policy is equal_steps: how shares with more items than others are equalised.
type Policy int

const (
	Pad  Policy = iota // every share gets the largest share's count, repeating some of its own items
	Drop               // every share gets the smallest share's count, the excess left out of the epoch
)

// Order is the epoch's global order: a permutation of the catalog's indices 0..n-1, the sorted
// catalog itself without shuffle, else a shuffle seeded by the epoch's seed (source.EpochSeed). It
// does not depend on the topology.
func Order(n int, shuffle bool, seed int64, epoch int) []int32 {
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	if shuffle {
		rng := rand.New(rand.NewSource(source.EpochSeed(seed, epoch)))
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	return order
}

// Share is one share's part of a generation: its slots, in delivery order, each a catalog index.
// Slots at Own and beyond are padding (items of its own share repeated); Excess items of the share
// were left out by Drop.
type Share struct {
	Slots   []int32
	Own     int     // slots that are the share's own items, delivered once
	Excess  int     // items dispatched to the share that the plan left out (Drop, a bucket's remainder)
	Batches []int32 // with batches: the lengths of the consecutive batches Slots makes
}

// Split dispatches the items of rem (catalog indices, in the epoch's order) over world shares with
// the hash rule (share = hash mod world, source.Rank's rule), each share keeping rem's order, then
// equalises the shares' lengths by the policy.
func Split(rem []int32, hashes []uint64, world int, policy Policy) []Share {
	shares := make([]Share, world)
	for _, i := range rem {
		s := int(hashes[i] % uint64(world))
		shares[s].Slots = append(shares[s].Slots, i)
	}
	lo, hi := len(rem), 0
	for _, sh := range shares {
		lo, hi = min(lo, len(sh.Slots)), max(hi, len(sh.Slots))
	}
	for s := range shares {
		sh := &shares[s]
		sh.Own = len(sh.Slots)
		switch policy {
		case Pad:
			for k := 0; len(sh.Slots) < hi; k++ {
				if sh.Own > 0 {
					sh.Slots = append(sh.Slots, sh.Slots[k%sh.Own])
				} else { // nothing of its own (a tiny remainder): repeat items of the others
					sh.Slots = append(sh.Slots, rem[(s+k)%len(rem)])
				}
			}
		case Drop:
			sh.Excess = sh.Own - lo
			sh.Slots, sh.Own = sh.Slots[:lo], lo
		}
	}
	return shares
}

// Done is what one share of a generation did: every slot (Full), or slots 0..Below-1 and Extra.
type Done struct {
	Share int
	Full  bool
	Below int64
	Extra []int64
}

// Gen is one generation of an epoch: a topology and what each of its shares did before the next
// generation (a resume with another topology) took over.
type Gen struct {
	World int
	Done  []Done
}

// Remaining is order without the items the generations did, in order's order: what the next
// generation dispatches. A slot beyond a share's length is ignored (the caller validated the state).
func Remaining(order []int32, hashes []uint64, n int, gens []Gen, policy Policy) []int32 {
	return remaining(order, n, gens, func(rem []int32, world int) []Share { return Split(rem, hashes, world, policy) })
}

func remaining(order []int32, n int, gens []Gen, split func(rem []int32, world int) []Share) []int32 {
	rem := order
	for _, g := range gens {
		shares := split(rem, g.World)
		done := make([]bool, n)
		for _, d := range g.Done {
			if d.Share < 0 || d.Share >= len(shares) {
				continue
			}
			slots := shares[d.Share].Slots
			if d.Full {
				for _, i := range slots {
					done[i] = true
				}
				continue
			}
			for k := int64(0); k < d.Below && k < int64(len(slots)); k++ {
				done[slots[k]] = true
			}
			for _, k := range d.Extra {
				if k >= 0 && k < int64(len(slots)) {
					done[slots[k]] = true
				}
			}
		}
		next := make([]int32, 0, len(rem))
		for _, i := range rem {
			if !done[i] {
				next = append(next, i)
			}
		}
		rem = next
	}
	return rem
}

// Hashes are the dispatch hashes of the catalog's keys (source.Hash64).
func Hashes(keys []string) []uint64 {
	h := make([]uint64, len(keys))
	for i, k := range keys {
		h[i] = source.Hash64(k)
	}
	return h
}

// Digest identifies a catalog (its keys, in order): a resume state names the catalog it was taken
// over, so that a state of another dataset or listing is refused.
func Digest(keys []string) uint64 {
	h := uint64(14695981039346656037)
	for _, k := range keys {
		for i := 0; i < len(k); i++ {
			h ^= uint64(k[i])
			h *= 1099511628211
		}
		h ^= 0xff // separator: {"ab"} and {"a", "b"} differ
		h *= 1099511628211
	}
	return h
}
