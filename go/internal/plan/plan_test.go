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
	rng := rand.New(rand.NewSource(2))
	for trial := 0; trial < 200; trial++ {
		n := 1 + rng.Intn(400)
		ks := keys(n)
		h := Hashes(ks)
		policy := []Policy{Pad, Drop}[trial%2]
		name := []string{"pad", "drop"}[trial%2]
		info := resume.Plan{Items: n, Digest: fmt.Sprintf("%016x", Digest(ks)), Shuffle: true, Seed: int64(trial), EqualSteps: name}
		order := Order(n, true, int64(trial), 0)
		delivered := map[int32]int{}
		pads, excessLast := 0, 0
		var prior *resume.State // the gathered states of the previous generation
		topologies := 1 + rng.Intn(4)
		for g := 0; g <= topologies; g++ {
			world := 1 + rng.Intn(6)
			if trial == 175 {
				t.Logf("gen %d world %d delivered %d", g, world, len(delivered))
			}
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
			shares := Split(Remaining(order, h, n, gens, policy), h, world, policy)
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
			t.Fatalf("trial %d: %d deliveries of %d items, but %d padding slots", trial, total, len(delivered), pads)
		}
		if policy == Pad && len(delivered) != n {
			t.Fatalf("trial %d (pad): %d of %d items delivered", trial, len(delivered), n)
		}
		if policy == Drop && (pads != 0 || len(delivered)+excessLast != n) {
			t.Fatalf("trial %d (drop): %d padding slots, %d delivered + %d left out != %d", trial, pads, len(delivered), excessLast, n)
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
