package source

import (
	"fmt"
	"math"
	"testing"
)

func TestRankSpread(t *testing.T) {
	const n = 100_000
	for _, world := range []int{2, 3, 7, 16} {
		counts := make([]int, world)
		for i := 0; i < n; i++ {
			counts[Rank(fmt.Sprintf("shard-%05d/img_%06d.jpg", i%97, i), world)]++
		}
		want := float64(n) / float64(world)
		for r, c := range counts {
			if dev := math.Abs(float64(c)-want) / want; dev > 0.03 {
				t.Errorf("world %d rank %d: %d files, %.1f%% away from %d", world, r, c, 100*dev, int(want))
			}
		}
	}
}

func TestRankPartitionIsExact(t *testing.T) {
	for i := 0; i < 10_000; i++ {
		key := fmt.Sprintf("dir/%d.png", i)
		r := Rank(key, 5)
		if r < 0 || r >= 5 {
			t.Fatalf("rank %d out of range", r)
		}
		if Rank(key, 5) != r {
			t.Fatalf("rank of %q is not stable", key)
		}
	}
	if Rank("anything", 1) != 0 || Rank("anything", 0) != 0 {
		t.Fatal("world size 1 must map everything to rank 0")
	}
}

func TestHashIsPinned(t *testing.T) {
	// Changing the hash silently re-splits every user's dataset across ranks.
	if got := Hash64("a/b.jpg"); got != 0x35f8a6164e308fa3 {
		t.Fatalf("Hash64 changed: %#x", got)
	}
}
