package datago

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// sharesOf runs one client per share of world over root with extra keys and returns what each
// delivered: sample ids, or with batch_size the batches' (width x height, ids).
func sharesOf(t *testing.T, root string, world int, extra string) [][]string {
	t.Helper()
	out := make([][]string, world)
	for s := 0; s < world; s++ {
		c, err := NewFromJSON([]byte(fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q, "rank": %d, "world_size": %d, "random_sampling": true, "seed": 9}, "concurrency": 3%s}`, root, s, world, extra)))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for {
			if c.cfg.BatchSize == 0 {
				smp, err := c.Next(10 * time.Second)
				if errors.Is(err, ErrEnd) {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				out[s] = append(out[s], smp.ID)
				smp.Free()
				continue
			}
			b, err := c.NextBatch(10 * time.Second)
			if errors.Is(err, ErrEnd) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			out[s] = append(out[s], fmt.Sprintf("%dx%dx%d", b.Images.Width, b.Images.Height, len(b.Samples)))
			b.Free()
		}
		c.Stop()
	}
	return out
}

// TestPlannedPipeline runs planned runs through the whole pipeline (with -race: the lister, the
// substitutes' lookups from the decoders and the collector's planned batches).
func TestPlannedPipeline(t *testing.T) {
	root := t.TempDir()
	files := writeMixed(t, root, 40)
	got := sharesOf(t, root, 3, `, "equal_steps": "pad"`)
	seen := map[string]bool{}
	for _, ids := range got {
		if len(ids) != len(got[0]) {
			t.Fatalf("pad: counts %d and %d", len(ids), len(got[0]))
		}
		for _, id := range ids {
			seen[id] = true
		}
	}
	if len(seen) != len(files) {
		t.Fatalf("pad: %d of %d files", len(seen), len(files))
	}
	aligned := sharesOf(t, root, 3, `, `+crop64+`, "batch_size": 4, "bucket_per_step": true`)
	for s := range aligned {
		if fmt.Sprint(aligned[s]) != fmt.Sprint(aligned[0]) {
			t.Fatalf("bucket_per_step: share %d's steps %v, share 0's %v", s, aligned[s], aligned[0])
		}
	}
	if len(aligned[0]) == 0 {
		t.Fatal("no batches")
	}
}
