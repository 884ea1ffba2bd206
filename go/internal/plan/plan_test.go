package plan

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"

	"github.com/datago-dev/datago/internal/resume"
)

func keys(n int) []string {
	k := make([]string, n)
	for i := range k {
		k[i] = fmt.Sprintf("d%d/img%05d.jpg", i%7, i)
	}
	slices.Sort(k)
	return k
}

func TestOrderIsASeededPermutation(t *testing.T) {
	a, b := Order(1000, true, 5, 2), Order(1000, true, 5, 2)
	if !slices.Equal(a, b) {
		t.Fatal("the same seed and epoch gave two orders")
	}
	if slices.Equal(a, Order(1000, true, 5, 3)) || slices.Equal(a, Order(1000, true, 6, 2)) {
		t.Fatal("another epoch or seed gave the same order")
	}
	s := slices.Clone(a)
	slices.Sort(s)
	if !slices.Equal(s, Order(1000, false, 5, 2)) {
		t.Fatal("not a permutation of the catalog")
	}
}

// TestSplitEqualises: over random sizes, worlds and policies, every share has the same length; with
// Pad every item is some share's own item exactly once and the padding repeats the share's own items;
// with Drop no item is served twice and the kept ones plus the excess are the items.
func TestSplitEqualises(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for trial := 0; trial < 300; trial++ {
		n, world := rng.Intn(300), 1+rng.Intn(12)
		h := Hashes(keys(n))
		rem := Order(n, true, int64(trial), 0)[:rng.Intn(n+1)]
		for _, policy := range []Policy{Pad, Drop} {
			shares := Split(rem, h, world, policy)
			seen := map[int32]int{}
			excess := 0
			for s, sh := range shares {
				if len(sh.Slots) != len(shares[0].Slots) {
					t.Fatalf("n=%d world=%d policy=%d: share %d has %d slots, share 0 %d", n, world, policy, s, len(sh.Slots), len(shares[0].Slots))
				}
				for k, i := range sh.Slots {
					if k < sh.Own {
						seen[i]++
						if int(h[i]%uint64(world)) != s {
							t.Fatalf("item %d is not share %d's by the hash rule", i, s)
						}
					} else if sh.Own > 0 && !slices.Contains(sh.Slots[:sh.Own], i) {
						t.Fatalf("share %d pads with %d, not one of its own", s, i)
					}
				}
				excess += sh.Excess
			}
			for i, c := range seen {
				if c != 1 {
					t.Fatalf("item %d served %d times as an own item", i, c)
				}
			}
			if policy == Pad && len(seen) != len(rem) {
				t.Fatalf("pad: %d of %d items served", len(seen), len(rem))
			}
			if policy == Drop && len(seen)+excess != len(rem) {
				t.Fatalf("drop: %d served + %d excess != %d", len(seen), excess, len(rem))
			}
		}
	}
}

// TestElasticChain is the property exact resume rests on, through the resume states themselves: an
// epoch run as a chain of topologies, each stopped at random points (prefixes plus out-of-order
// extras), its states gathered and resolved for the next topology, delivers every item (Pad) or every
// item but the last generation's excess (Drop), the only repeats being padding slots.
func TestElasticChain(t *testing.T) {
	for _, mode := range []string{"samples", "batches", "aligned"} {
		t.Run(mode, func(t *testing.T) { elasticChain(t, mode) })
	}
}

func elasticChain(t *testing.T, mode string) {
	rng := rand.New(rand.NewSource(2))
	for trial := 0; trial < 200; trial++ {
		n := 1 + rng.Intn(400)
		ks := keys(n)
		h := Hashes(ks)
		policy := []Policy{Pad, Drop}[trial%2]
		name := []string{"pad", "drop"}[trial%2]
		layout := &Layout{Policy: policy}
		unplannable := 0
		if mode != "samples" {
			layout.BatchSize, layout.Aligned, layout.DropLast = 1+rng.Intn(6), mode == "aligned", rng.Intn(4) == 0
			layout.Buckets = make([]int32, n)
			for i := range layout.Buckets {
				layout.Buckets[i] = int32(rng.Intn(5)) - int32(rng.Intn(20)/19) // a few -1: unreadable
				if layout.Buckets[i] < 0 {
					layout.Buckets[i] = -1
					unplannable++
				}
			}
		}
		info := resume.Plan{Items: n, Digest: fmt.Sprintf("%016x", Digest(ks)), Shuffle: true, Seed: int64(trial), EqualSteps: name}
		order := Order(n, true, int64(trial), 0)
		delivered := map[int32]int{}
		pads, excessLast := 0, 0
		var prior *resume.State // the gathered states of the previous generation
		topologies := 1 + rng.Intn(4)
		for g := 0; g <= topologies; g++ {
			world := 1 + rng.Intn(6)
			last := g == topologies
			var parts []resume.State
			states := make([]*resume.State, world)
			var gens []Gen // epoch 0's earlier generations, from a share still in it
			running := prior == nil
			for s := range states {
				if prior != nil {
					var err error
					if states[s], err = resolve(prior, info, world, s); err != nil {
						t.Fatal(err)
					}
					if states[s].Epoch == 0 && !running {
						running = true
						for _, pe := range states[s].Prior {
							gens = append(gens, toGens(pe.Gens)...)
						}
					}
				}
			}
			shares := layout.Split(layout.Remaining(order, h, n, gens), h, world)
			for s := range shares {
				if len(shares[s].Batches) != len(shares[0].Batches) {
					t.Fatalf("%s: share %d has %d batches, share 0 %d", mode, s, len(shares[s].Batches), len(shares[0].Batches))
				}
			}
			genExcess := 0
			for s, st := range states {
				sh := shares[s]
				genExcess += sh.Excess
				tr := resume.NewTracker(st)
				tr.Planned(info, world, s, priorOf(st))
				for k, i := range sh.Slots {
					if tr.IsDone(0, int64(k)) { // the same topology continues its own state
						continue
					}
					// A prefix, then scattered slots (delivered out of order), unless it is the last generation.
					if !last && k > len(sh.Slots)/3 && rng.Intn(3) != 0 {
						continue
					}
					tr.Mark(0, int64(k))
					delivered[i]++
					if k >= sh.Own {
						pads++
					}
				}
				tr.Listed(0, int64(len(sh.Slots)))
				parts = append(parts, tr.State())
			}
			if running {
				excessLast = genExcess // the epoch's last generation so far: what Drop left out
			}
			prior = &resume.State{Version: resume.VersionPlanned, Parts: parts}
		}
		total := 0
		for _, c := range delivered {
			total += c
		}
		// A padding slot delivered before its original (out of order, then a topology change) is the
		// item's only delivery: repeats are at most the padding slots.
		if total-len(delivered) > pads {
			t.Fatalf("%s trial %d: %d deliveries of %d items, but %d padding slots", mode, trial, total, len(delivered), pads)
		}
		exact := policy == Pad && (mode == "samples" || (mode == "batches" && !layout.DropLast))
		if exact && len(delivered) != n-unplannable {
			t.Fatalf("%s trial %d (pad): %d of %d items delivered", mode, trial, len(delivered), n-unplannable)
		}
		if !exact && len(delivered)+excessLast != n-unplannable {
			t.Fatalf("%s trial %d: %d delivered + %d left out != %d", mode, trial, len(delivered), excessLast, n-unplannable)
		}
		if (policy == Drop || mode == "aligned") && pads != 0 {
			t.Fatalf("%s trial %d: padding without pad", mode, trial)
		}
	}
}

func resolve(st *resume.State, info resume.Plan, world, share int) (*resume.State, error) {
	out, err := resume.Resolve(st, info, world, share)
	if err != nil {
		return nil, err
	}
	return out, nil
}

func priorOf(st *resume.State) []resume.PriorEpoch {
	if st == nil {
		return nil
	}
	return st.Prior
}

func toGens(prior []resume.PriorGen) []Gen {
	var gens []Gen
	for _, g := range prior {
		gen := Gen{World: g.World}
		for _, d := range g.Done {
			gen.Done = append(gen.Done, Done{Share: d.Share, Full: d.Full, Below: d.Below, Extra: d.Extra})
		}
		gens = append(gens, gen)
	}
	return gens
}

// TestBatchLayouts: batches hold one bucket; per-share batches equalise the counts; aligned steps have
// one bucket and one size across shares at every step.
func TestBatchLayouts(t *testing.T) {
	rng := rand.New(rand.NewSource(3))
	for trial := 0; trial < 200; trial++ {
		n, world, size := rng.Intn(500), 1+rng.Intn(8), 1+rng.Intn(9)
		h := Hashes(keys(n))
		buckets := make([]int32, n)
		for i := range buckets {
			buckets[i] = int32(rng.Intn(1 + rng.Intn(6)))
		}
		rem := Order(n, true, int64(trial), 1)
		for _, aligned := range []bool{false, true} {
			for _, policy := range []Policy{Pad, Drop} {
				l := &Layout{Policy: policy, BatchSize: size, Buckets: buckets, Aligned: aligned}
				shares := l.Split(rem, h, world)
				seen := map[int32]int{}
				for s, sh := range shares {
					off := 0
					for k, b := range sh.Batches {
						batch := sh.Slots[off : off+int(b)]
						off += int(b)
						if b < 1 || int(b) > size {
							t.Fatalf("batch of %d with batch size %d", b, size)
						}
						for _, i := range batch {
							if buckets[i] != buckets[batch[0]] {
								t.Fatal("a batch mixes buckets")
							}
						}
						if aligned {
							o := shares[0]
							start := 0
							for _, x := range o.Batches[:k] {
								start += int(x)
							}
							if o.Batches[k] != b || buckets[o.Slots[start]] != buckets[batch[0]] {
								t.Fatalf("step %d: share %d's batch differs from share 0's", k, s)
							}
						}
					}
					for _, i := range sh.Slots[:sh.Own] {
						seen[i]++
					}
				}
				for i, c := range seen {
					if c != 1 {
						t.Fatalf("item %d delivered %d times as an own item", i, c)
					}
				}
				excess := 0
				for _, sh := range shares {
					excess += sh.Excess
				}
				if len(seen)+excess != n {
					t.Fatalf("aligned=%v policy=%d: %d own + %d excess != %d", aligned, policy, len(seen), excess, n)
				}
				if aligned && excess > world*len(l.bucketSet()) {
					t.Fatalf("aligned leaves out %d items: more than world-1 per bucket", excess)
				}
			}
		}
	}
}

// TestAlignedLeavesOutLittle: 20,000 images over the 27 buckets of 512 px, 4 ranks, batch size 32: at
// most 1% of the samples are left out (the bound).
func TestAlignedLeavesOutLittle(t *testing.T) {
	rng := rand.New(rand.NewSource(4))
	n := 20000
	buckets := make([]int32, n)
	for i := range buckets {
		// Photo-like: most images in a few common ratios, the rest spread over all 27 buckets.
		if rng.Intn(3) > 0 {
			buckets[i] = []int32{13, 9, 17, 5}[rng.Intn(4)]
		} else {
			buckets[i] = int32(rng.Intn(27))
		}
	}
	l := &Layout{BatchSize: 32, Buckets: buckets, Aligned: true}
	shares := l.Split(Order(n, true, 1, 0), Hashes(keys(n)), 4)
	excess := 0
	for _, sh := range shares {
		excess += sh.Excess
	}
	if frac := float64(excess) / float64(n); frac > 0.01 {
		t.Fatalf("%.2f%% left out", 100*frac)
	} else {
		t.Logf("%d of %d left out (%.2f%%), %d steps", excess, n, 100*frac, len(shares[0].Batches))
	}
}

func (l *Layout) bucketSet() map[int32]bool {
	set := map[int32]bool{}
	for _, b := range l.Buckets {
		set[b] = true
	}
	return set
}
