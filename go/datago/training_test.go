package datago

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/testimg"
)

// writeMixed writes n PNGs of three aspect ratios (three buckets at 64 px) under root.
func writeMixed(t *testing.T, root string, n int) []string {
	t.Helper()
	var all []string
	sizes := [][2]int{{64, 32}, {32, 64}, {48, 48}}
	for i, sz := range sizes {
		all = append(all, testimg.WriteFolder(t, filepath.Join(root, fmt.Sprint(i)), (n+2-i)/3, sz[0], sz[1])...)
	}
	sort.Strings(all)
	return all
}

const crop64 = `"image_config": {"crop_and_resize": true, "default_image_size": 64, "downsampling_ratio": 16}`

func startClient(t *testing.T, root, extra string) *Client {
	t.Helper()
	c := openClient(t, root, extra)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// order takes up to n samples (all with n < 0) and returns their ids in delivery order.
func order(t *testing.T, c *Client, n int) []string {
	t.Helper()
	var ids []string
	for n < 0 || len(ids) < n {
		s, err := c.Next(10 * time.Second)
		if errors.Is(err, ErrEnd) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, s.ID)
		s.Free()
	}
	return ids
}

func sorted(ids []string) []string {
	out := append([]string(nil), ids...)
	sort.Strings(out)
	return out
}

func TestSeededShuffleIsReproducibleAndEachEpochAPermutation(t *testing.T) {
	root := t.TempDir()
	files := writeMixed(t, root, 60)
	cfg := func(seed int) string {
		return fmt.Sprintf(`, "concurrency": 4, "deterministic": true, "epochs": 3`) +
			fmt.Sprintf(`, "source_config": {"root_path": %q, "random_sampling": true, "seed": %d}`, root, seed)
	}
	run := func(seed int) []string {
		c, err := NewFromJSON([]byte(fmt.Sprintf(`{"source_type": "filesystem"%s}`, cfg(seed))))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer c.Stop()
		return order(t, c, -1)
	}
	a, b, other := run(7), run(7), run(8)
	if len(a) != 3*len(files) {
		t.Fatalf("3 epochs gave %d samples, want %d", len(a), 3*len(files))
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave two different orders")
	}
	if reflect.DeepEqual(a, other) {
		t.Fatal("seeds 7 and 8 gave the same order")
	}
	for e := 0; e < 3; e++ {
		epoch := a[e*len(files) : (e+1)*len(files)]
		if !reflect.DeepEqual(sorted(epoch), files) {
			t.Fatalf("epoch %d is not a permutation of the folder", e)
		}
		if e > 0 && reflect.DeepEqual(epoch, a[:len(files)]) {
			t.Fatalf("epoch %d repeats epoch 0's order", e)
		}
	}
	if reflect.DeepEqual(a[:len(files)], files) {
		t.Fatal("random_sampling served the sorted order")
	}
}

// takeBatches reads batches until n samples were delivered (all with n < 0).
func takeBatches(t *testing.T, c *Client, n int, check func(*Batch)) []string {
	t.Helper()
	var ids []string
	for n < 0 || len(ids) < n {
		b, err := c.NextBatch(10 * time.Second)
		if errors.Is(err, ErrEnd) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if check != nil {
			check(b)
		}
		for _, s := range b.Samples {
			ids = append(ids, s.ID)
		}
		b.Free()
	}
	return ids
}

func TestBatchesShareABucketAndCoverTheEpoch(t *testing.T) {
	root := t.TempDir()
	files := writeMixed(t, root, 50) // 17, 17 and 16 images per bucket
	for _, dropLast := range []bool{false, true} {
		c := startClient(t, root, fmt.Sprintf(`, %s, "batch_size": 5, "drop_last": %v, "concurrency": 3`, crop64, dropLast))
		sizes := map[int]int{}
		ids := takeBatches(t, c, -1, func(b *Batch) {
			im := b.Images
			if im.Len != len(b.Samples)*im.Width*im.Height*3 || len(b.Samples) > 5 || len(b.Samples) == 0 {
				t.Fatalf("batch of %d: %dx%dx%d, %d bytes", len(b.Samples), im.Width, im.Height, im.Channels, im.Len)
			}
			sizes[len(b.Samples)]++
		})
		st := c.Stats()
		if dropLast {
			// 3 + 3 + 3 full batches; 2 + 2 + 1 samples dropped.
			if len(ids) != 45 || st.DroppedLast != 5 || sizes[5] != 9 || len(sizes) != 1 {
				t.Fatalf("drop_last: %d samples in %v, dropped %d", len(ids), sizes, st.DroppedLast)
			}
			continue
		}
		if !reflect.DeepEqual(sorted(ids), files) {
			t.Fatalf("batches delivered %d samples, want each of the %d once", len(ids), len(files))
		}
		if sizes[5] != 9 || sizes[2] != 2 || sizes[1] != 1 || st.Batches != 12 {
			t.Fatalf("batch sizes %v, %d batches", sizes, st.Batches)
		}
	}
}

func TestBatchedPartialsAreBoundedByTheBuckets(t *testing.T) {
	root := t.TempDir()
	files := writeMixed(t, root, 90)
	// Many buckets (ratios 1/4..4 at 64 px), batches of 4: partial batches hold at most 3
	// samples per bucket, so the client never holds more than that while waiting.
	c := startClient(t, root, `, "image_config": {"crop_and_resize": true, "default_image_size": 64,
		"downsampling_ratio": 8, "min_aspect_ratio": 0.25, "max_aspect_ratio": 4}, "batch_size": 4, "epochs": 2`)
	ids := takeBatches(t, c, -1, nil)
	if len(ids) != 2*len(files) {
		t.Fatalf("2 epochs gave %d samples, want %d", len(ids), 2*len(files))
	}
	if held, bound := c.Stats().BatchHeldMax, int64(3*len(c.Config().Image.Buckets)); held > bound || held == 0 {
		t.Fatalf("partial batches held up to %d samples; bound %d", held, bound)
	}
}

func TestResumeDeliversExactlyTheRestOfTheEpoch(t *testing.T) {
	root := t.TempDir()
	files := writeMixed(t, root, 40)
	for _, tc := range []struct {
		name  string
		extra string
		world int
		batch bool
	}{
		{"samples", `, "concurrency": 3`, 1, false},
		{"deterministic shuffled", `, "concurrency": 3, "deterministic": true`, 1, false},
		{"two ranks", `, "concurrency": 2`, 2, false},
		{"batches", `, "concurrency": 2, "batch_size": 4, ` + crop64, 1, true},
		{"two ranks, batches", `, "concurrency": 2, "batch_size": 3, ` + crop64, 2, true},
	} {
		for _, k := range []int{0, 1, 5, 13, 19, 20, 39} {
			var union []string
			for rank := 0; rank < tc.world; rank++ {
				base := fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q, "rank": %d, "world_size": %d, "random_sampling": true, "seed": 3}%s`,
					root, rank, tc.world, tc.extra)
				take := func(c *Client, n int) []string {
					if tc.batch {
						return takeBatches(t, c, n, nil)
					}
					return order(t, c, n)
				}
				first, err := NewFromJSON([]byte(base + "}"))
				if err != nil {
					t.Fatal(err)
				}
				first.Start()
				before := take(first, k/tc.world)
				state, _ := json.Marshal(first.State())
				first.Stop()
				second, err := NewFromJSON([]byte(base + `, "resume_state": ` + string(state) + "}"))
				if err != nil {
					t.Fatal(err)
				}
				second.Start()
				after := take(second, -1)
				second.Stop()
				union = append(union, before...)
				union = append(union, after...)
			}
			if got := sorted(union); !reflect.DeepEqual(got, files) {
				t.Fatalf("%s, stop after %d: before+after = %d samples (want %d, each once)", tc.name, k, len(got), len(files))
			}
		}
	}
}

func TestResumeAcrossEpochs(t *testing.T) {
	root := t.TempDir()
	files := writeMixed(t, root, 12)
	base := fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q, "random_sampling": true}, "epochs": 3, "concurrency": 2`, root)
	for _, k := range []int{11, 12, 13, 24, 30} {
		first, _ := NewFromJSON([]byte(base + "}"))
		first.Start()
		before := order(t, first, k)
		st := first.State()
		state, _ := json.Marshal(st)
		first.Stop()
		second, err := NewFromJSON([]byte(base + `, "resume_state": ` + string(state) + "}"))
		if err != nil {
			t.Fatal(err)
		}
		second.Start()
		after := order(t, second, -1)
		second.Stop()
		all := append(before, after...)
		count := map[string]int{}
		for _, id := range all {
			count[id]++
		}
		if len(all) != 3*len(files) || len(count) != len(files) {
			t.Fatalf("stop after %d (state %s): %d samples over %d files, want 3 epochs of %d", k, state, len(all), len(count), len(files))
		}
		for id, n := range count {
			if n != 3 {
				t.Fatalf("stop after %d: %s delivered %d times in 3 epochs", k, id, n)
			}
		}
	}
}

func TestTrainingConfigErrorsNameTheKey(t *testing.T) {
	root := t.TempDir()
	for _, tc := range []struct{ extra, key string }{
		{`, "batch_size": 4`, "batch_size"},
		{`, "batch_size": -1`, "batch_size"},
		{`, "epochs": -2`, "epochs"},
		{`, "deterministic": 1`, "deterministic"},
		{`, "resume_state": {"version": 9, "epoch": 0, "done": []}`, "resume_state.version"},
		{`, "resume_state": {"version": 1, "epoch": 0, "done": [], "x": 1}`, "resume_state"},
		{`, "resume_state": {"version": 1, "epoch": 2, "done": [{"epoch": 1, "below": 0}]}`, "resume_state.done[0]"},
	} {
		_, err := NewFromJSON([]byte(fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q}%s}`, root, tc.extra)))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%s: got %v, want an error on %q", tc.extra, err, tc.key)
		}
	}
}

func TestCatalogGetsAnyIndicesInOrder(t *testing.T) {
	root := t.TempDir()
	files := writeMixed(t, root, 20)
	if err := os.WriteFile(filepath.Join(root, "zz-bad.png"), []byte("not a png"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q, "rank": 1, "world_size": 2}, "concurrency": 3, %s}`, root, crop64)))
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewCatalog(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if k.Len() != len(files)+1 || !reflect.DeepEqual(k.IDs()[:len(files)], files) {
		t.Fatalf("catalog of %d files, ids %v", k.Len(), k.IDs())
	}
	indices := []int{20, 3, 3, 0, 19, 7}
	got, err := k.Get(indices)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range indices {
		switch {
		case x == 20 && got[i] != nil:
			t.Fatalf("the bad file gave a sample")
		case x != 20 && (got[i] == nil || got[i].ID != files[x] || got[i].Image.Width == 0):
			t.Fatalf("position %d (index %d): %+v", i, x, got[i])
		}
		got[i].Free()
	}
	if st := k.Stats(); st.Served != 5 || st.Skipped[ReasonDecodeError] != 1 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := k.Get([]int{21}); !errors.Is(err, ErrState) {
		t.Fatalf("out of range index: %v", err)
	}
}

// With deterministic and batch_size, identical runs give identical sequences of batches, partial
// batches at the epochs' ends included (they used to come out in map order).
func TestDeterministicBatchesRepeatExactly(t *testing.T) {
	root := t.TempDir()
	writeMixed(t, root, 50) // 17, 17 and 16 images per bucket: partial batches in every bucket
	run := func() []string {
		c := startClient(t, root, fmt.Sprintf(`, %s, "batch_size": 5, "deterministic": true, "epochs": 2, "concurrency": 3`, crop64))
		defer c.Stop()
		var seq []string
		takeBatches(t, c, -1, func(b *Batch) {
			ids := make([]string, len(b.Samples))
			for i, s := range b.Samples {
				ids[i] = s.ID
			}
			seq = append(seq, fmt.Sprintf("%dx%d:%v", b.Images.Width, b.Images.Height, ids))
		})
		return seq
	}
	first := run()
	for i := 0; i < 8; i++ {
		if got := run(); !reflect.DeepEqual(got, first) {
			t.Fatalf("run %d gave another sequence of batches:\n%v\nwant\n%v", i+1, got, first)
		}
	}
}
