package webdataset

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/faults"
	"github.com/datago-dev/datago/internal/source"
)

// wdsShard returns a tar shard of n samples "s<shard>_<i>" with .jpg (fake bytes), .txt, .cls, .json
// and .npy members.
func wdsShard(t testing.TB, shard, n int) []byte {
	t.Helper()
	var members []wdsMember
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("s%d_%03d", shard, i)
		members = append(members,
			wdsMember{name: key + ".jpg", data: "img " + key},
			wdsMember{name: key + ".txt", data: "caption of " + key},
			wdsMember{name: key + ".cls", data: fmt.Sprint(i % 7)},
			wdsMember{name: key + ".json", data: fmt.Sprintf(`{"i": %d, "big": 12345678901234567890}`, i)},
			wdsMember{name: key + ".npy", data: "raw"},
		)
	}
	return wdsTar(t, members...)
}

func gzipped(t testing.TB, data []byte) []byte {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

type listed struct {
	mu      sync.Mutex
	items   []source.Item
	skipped map[string][]string // reason -> ids
}

func (l *listed) ids() []string {
	var out []string
	for _, it := range l.items {
		out = append(out, it.ID)
	}
	return out
}

// withDefaults completes a test's partial config with Parse's defaults (a millisecond backoff).
func withDefaults(c Config) Config {
	d := defaults()
	d.RetryBackoff = time.Millisecond
	if c.ShuffleBuffer == 0 {
		c.ShuffleBuffer = d.ShuffleBuffer
	}
	if c.ConcurrentDownloads == 0 {
		c.ConcurrentDownloads = d.ConcurrentDownloads
	}
	if c.WorldSize == 0 {
		c.WorldSize = d.WorldSize
	}
	if c.ImageKeys == nil {
		c.ImageKeys = d.ImageKeys
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = d.RetryBackoff
	}
	return c
}

// testCommon is what the pipeline would hand the source: plain goroutines, a 1 GiB limit.
func testCommon() source.Common {
	return source.Common{MaxFileBytes: 1 << 30, Fetchers: 4, Go: func(_ string, fn func()) { go fn() }}
}

func listWDS(t *testing.T, cfg Config) *listed {
	t.Helper()
	l := &listed{skipped: map[string][]string{}}
	err := newSource(withDefaults(cfg), testCommon()).List(context.Background(), func(it source.Item) bool {
		l.items = append(l.items, it)
		return true
	}, func(id, reason string, err error) {
		l.mu.Lock()
		defer l.mu.Unlock()
		t.Logf("skip %s (%s): %v", id, reason, err)
		l.skipped[reason] = append(l.skipped[reason], id)
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// writeShards writes n shards of per samples each under dir and returns their paths.
func writeShards(t *testing.T, dir string, n, per int) []string {
	var paths []string
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("shard-%02d.tar", i))
		if err := os.WriteFile(p, wdsShard(t, i, per), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

func allIDs(shards []string, per int) []string {
	var out []string
	for i, s := range shards {
		for j := 0; j < per; j++ {
			out = append(out, fmt.Sprintf("%s#s%d_%03d", s, i, j))
		}
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	return s
}

func TestWebDatasetDeliversEverySampleWithItsMembers(t *testing.T) {
	dir := t.TempDir()
	shards := writeShards(t, dir, 3, 10)
	gz := filepath.Join(dir, "shard-03.tgz")
	if err := os.WriteFile(gz, gzipped(t, wdsShard(t, 3, 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	shards = append(shards, "file://"+gz)
	l := listWDS(t, Config{Shards: shards, ConcurrentDownloads: 2})
	if got, want := sorted(l.ids()), allIDs(shards, 10); !wdsSame(got, want) {
		t.Fatalf("got %d ids, want %d:\n%q\n%q", len(got), len(want), got, want)
	}
	for _, it := range l.items {
		key := it.Raw.Meta["key"].(string)
		var i int
		fmt.Sscanf(key[strings.Index(key, "_")+1:], "%d", &i)
		if string(it.Raw.Image) != "img "+key || it.Raw.Meta["caption"] != "caption of "+key ||
			it.Raw.Meta["label"] != int64(i%7) || it.Path != it.Raw.Meta["shard"] {
			t.Fatalf("item %s: %+v", it.ID, it.Raw.Meta)
		}
		attrs := it.Raw.Meta["attributes"].(map[string]any)
		if fmt.Sprint(attrs["i"]) != fmt.Sprint(i) || fmt.Sprint(attrs["big"]) != "12345678901234567890" {
			t.Fatalf("attributes %v", attrs)
		}
		if len(it.Raw.Bytes) != 1 || it.Raw.Bytes[0].Name != "npy" || string(it.Raw.Bytes[0].Data) != "raw" {
			t.Fatalf("extras %+v", it.Raw.Bytes)
		}
	}
}

func TestWebDatasetSkipsBadSamplesWithAReason(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.tar")
	os.WriteFile(p, wdsTar(t,
		wdsMember{name: "ok.PNG", data: "png"}, wdsMember{name: "ok.jpg", data: "jpg"}, wdsMember{name: "ok.json", data: "[1, 2]"},
		wdsMember{name: "noimage.txt", data: "t"},
		wdsMember{name: "badcls.jpg", data: "j"}, wdsMember{name: "badcls.cls", data: "seven"},
		wdsMember{name: "badjson.jpg", data: "j"}, wdsMember{name: "badjson.json", data: "{"},
		wdsMember{name: "dup.jpg", data: "j"}, wdsMember{name: "dup.txt", data: "1"}, wdsMember{name: "dup.txt", data: "2"},
		wdsMember{name: "empty.jpg", data: ""},
		wdsMember{name: "webp.webp", data: "w"},
	), 0o644)
	l := listWDS(t, Config{Shards: []string{p, filepath.Join(dir, "missing.tar")}, ImageKeys: []string{"webp", "png", "jpg"}})
	if got := l.ids(); !wdsSame(got, []string{p + "#ok", p + "#webp"}) {
		t.Fatalf("got %q", got)
	}
	ok := l.items[0].Raw
	if string(ok.Image) != "png" || len(ok.Bytes) != 2 || ok.Bytes[0].Name != "jpg" || ok.Bytes[1].Name != "json" || ok.Meta["attributes"] != nil {
		t.Fatalf("ok: %+v", ok)
	}
	want := map[string][]string{
		source.ReasonMissingImage:    {p + "#noimage"},
		source.ReasonBadMetadata:     {p + "#badcls", p + "#badjson"},
		source.ReasonDuplicateMember: {p + "#dup"},
		source.ReasonEmpty:           {p + "#empty"},
		source.ReasonShardError:      {filepath.Join(dir, "missing.tar")},
	}
	for reason, ids := range want {
		if !wdsSame(l.skipped[reason], ids) {
			t.Errorf("%s: %q, want %q", reason, l.skipped[reason], ids)
		}
	}
}

func TestWebDatasetRanksAreDisjointAndComplete(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ shards, world int }{{7, 3}, {2, 3}, {1, 4}} {
		sub := filepath.Join(dir, fmt.Sprint(tc.shards, tc.world))
		os.Mkdir(sub, 0o755)
		shards := writeShards(t, sub, tc.shards, 40) // ids hash over ranks: 40 make an empty rank ~1e-5 likely
		var all []string
		for rank := 0; rank < tc.world; rank++ {
			ids := listWDS(t, Config{Shards: shards, Rank: rank, WorldSize: tc.world, ConcurrentDownloads: 3}).ids()
			if len(ids) == 0 {
				t.Errorf("%d shards, world %d: rank %d got nothing", tc.shards, tc.world, rank)
			}
			all = append(all, ids...)
			if tc.shards >= tc.world {
				for _, id := range ids {
					var shard int
					fmt.Sscanf(id[strings.LastIndex(id, "#")+2:], "%d", &shard)
					if shard%tc.world != rank {
						t.Fatalf("rank %d got %s of shard %d", rank, id, shard)
					}
				}
			}
		}
		if got, want := sorted(all), allIDs(shards, 40); !wdsSame(got, want) {
			t.Fatalf("%d shards, world %d: ranks together got %d ids, want %d", tc.shards, tc.world, len(got), len(want))
		}
	}
}

func TestWebDatasetShuffleIsReproducible(t *testing.T) {
	dir := t.TempDir()
	shards := writeShards(t, dir, 6, 20)
	order := func(seed int64, conc int) []string {
		return listWDS(t, Config{Shards: shards, Shuffle: true, ShuffleBuffer: 30, Seed: seed, ConcurrentDownloads: conc}).ids()
	}
	a, b, c := order(1, 3), order(1, 3), order(2, 3)
	if !wdsSame(a, b) {
		t.Fatal("the same seed gave two orders")
	}
	if wdsSame(a, c) {
		t.Fatal("two seeds gave the same order")
	}
	if !wdsSame(sorted(a), allIDs(shards, 20)) || !wdsSame(sorted(c), allIDs(shards, 20)) {
		t.Fatal("shuffling lost or duplicated samples")
	}
	plain := listWDS(t, Config{Shards: shards, ConcurrentDownloads: 1}).ids()
	if !wdsSame(plain, allIDs(shards, 20)) {
		t.Fatal("without shuffle and with one download, samples come in archive order")
	}
	// The first 20 samples of a shuffled pass come from several shards.
	seen := map[string]bool{}
	for _, id := range a[:20] {
		seen[id[:strings.Index(id, "#")]] = true
	}
	if len(seen) < 2 {
		t.Fatalf("the first samples all come from one shard: %q", a[:20])
	}
}

func TestWebDatasetOverHTTPWithFaults(t *testing.T) {
	files := map[string][]byte{}
	var shards []string
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("/s-%d.tar", i)
		files[name] = wdsShard(t, i, 15)
		shards = append(shards, name)
	}
	files["/s-4.tar.gz"] = gzipped(t, wdsShard(t, 4, 15))
	shards = append(shards, "/s-4.tar.gz")
	s := newWDSFaultServer(t, files)
	for i := range shards {
		shards[i] = s.URL + shards[i]
	}
	s.status[2] = 500
	s.cutAfter, s.cuts = 3000, 3
	l := listWDS(t, Config{Shards: append(shards, s.URL+"/missing.tar"), ConcurrentDownloads: 3, Timeout: 5 * time.Second, MaxRetries: 3})
	if got, want := sorted(l.ids()), allIDs(shards, 15); !wdsSame(got, want) {
		t.Fatalf("got %d ids, want %d", len(got), len(want))
	}
	if !wdsSame(l.skipped[source.ReasonShardError], []string{s.URL + "/missing.tar"}) || len(l.skipped) != 1 {
		t.Fatalf("skipped %v", l.skipped)
	}
}

func TestWebDatasetUnreadableShardLosesOnlyItsRest(t *testing.T) {
	files := map[string][]byte{"/a.tar": wdsShard(t, 0, 20), "/b.tar": wdsShard(t, 1, 20)}
	s := newWDSFaultServer(t, files)
	s.cutAfter, s.cuts = 30_000, 1      // about 6 samples
	s.status[2], s.status[3] = 500, 500 // the resume of the cut shard fails for good
	l := listWDS(t, Config{Shards: []string{s.URL + "/a.tar", s.URL + "/b.tar"}, ConcurrentDownloads: 1, MaxRetries: 1, Timeout: 5 * time.Second})
	ids := l.ids()
	var fromA int
	for _, id := range ids {
		if strings.Contains(id, "/a.tar#") {
			fromA++
		}
	}
	if len(ids)-fromA != 20 || fromA == 0 || fromA >= 20 {
		t.Fatalf("%d samples of a, %d of b", fromA, len(ids)-fromA)
	}
	if len(l.skipped[source.ReasonShardError]) != 1 || len(l.skipped[source.ReasonLost]) != 1 {
		t.Fatalf("skipped %v", l.skipped)
	}
	seen := map[string]bool{}
	for _, id := range append(ids, l.skipped[source.ReasonLost]...) {
		if seen[id] {
			t.Fatalf("%s twice", id)
		}
		seen[id] = true
	}
}

func TestWebDatasetCorruptAndTruncatedShards(t *testing.T) {
	dir := t.TempDir()
	data := wdsShard(t, 0, 10) // 5 members of 2 blocks each per sample
	corrupt := bytes.Clone(data)
	corrupt[(5*3+1)*2*blockSize+7] ^= 0x20 // the header of sample 3's .txt
	pc := filepath.Join(dir, "corrupt.tar")
	os.WriteFile(pc, corrupt, 0o644)
	pt := filepath.Join(dir, "truncated.tar")
	os.WriteFile(pt, wdsShard(t, 1, 10)[:(5*6+2)*2*blockSize+100], 0o644) // inside sample 6's .cls
	pg := filepath.Join(dir, "truncated.tgz")
	gz := gzipped(t, wdsShard(t, 2, 10))
	os.WriteFile(pg, gz[:len(gz)/3], 0o644)
	l := listWDS(t, Config{Shards: []string{pc, pt, pg}, ConcurrentDownloads: 1})
	var fromC, fromT int
	for _, id := range l.ids() {
		switch {
		case strings.HasPrefix(id, pc):
			fromC++
		case strings.HasPrefix(id, pt):
			fromT++
		}
	}
	if fromC != 9 || fromT != 6 {
		t.Fatalf("%d samples from the corrupt shard (want 9), %d from the truncated one (want 6)", fromC, fromT)
	}
	if !wdsSame(l.skipped[source.ReasonLost][:2], []string{pc + "#s0_003", pt + "#s1_006"}) {
		t.Fatalf("lost %q", l.skipped[source.ReasonLost])
	}
	if !wdsSame(l.skipped[source.ReasonShardError], []string{pt, pg}) {
		t.Fatalf("shard errors %q", l.skipped[source.ReasonShardError])
	}
}

func TestWebDatasetStopsPromptlyWithoutLeaks(t *testing.T) {
	data := wdsShard(t, 0, 50)
	files := map[string][]byte{}
	var shards []string
	for i := 0; i < 6; i++ {
		files[fmt.Sprintf("/%d.tar", i)] = data
	}
	s := newWDSFaultServer(t, files)
	s.stallAt, s.stall, s.stallAll = 20_000, 20*time.Second, true
	for i := 0; i < 6; i++ {
		shards = append(shards, fmt.Sprintf("%s/%d.tar", s.URL, i))
	}
	before := runtime.NumGoroutine()
	for _, shuffle := range []bool{false, true} {
		w := newSource(withDefaults(Config{Shards: shards, Shuffle: shuffle, ShuffleBuffer: 5, ConcurrentDownloads: 3, Timeout: time.Minute}), testCommon())
		n := 0
		start := time.Now()
		err := w.List(context.Background(), func(source.Item) bool { n++; return n < 3 }, func(string, string, error) {})
		if err != nil || n != 3 || time.Since(start) > 5*time.Second {
			t.Fatalf("shuffle %v: err %v, %d items, %v", shuffle, err, n, time.Since(start))
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(200*time.Millisecond, cancel)
		start = time.Now()
		err = w.List(ctx, func(source.Item) bool { return true }, func(string, string, error) {})
		if el := time.Since(start); err != nil || el < 200*time.Millisecond || el > 5*time.Second {
			t.Fatalf("shuffle %v: cancelled List returned %v after %v", shuffle, err, el)
		}
		w.client.CloseIdleConnections()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<16)
		t.Fatalf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

// A panic in a shard-reading goroutine reaches the Go of Common, with and without shuffle, and
// List still returns.
func TestWebDatasetReaderPanicGoesThroughCommonGo(t *testing.T) {
	shards := writeShards(t, t.TempDir(), 3, 4)
	for _, shuffle := range []bool{false, true} {
		var mu sync.Mutex
		var panics []string
		common := testCommon()
		common.Go = func(name string, fn func()) {
			go func() {
				defer func() {
					if r := recover(); r != nil {
						mu.Lock()
						panics = append(panics, fmt.Sprintf("%s: %v", name, r))
						mu.Unlock()
					}
				}()
				fn()
			}()
		}
		w := newSource(withDefaults(Config{Shards: shards, Shuffle: shuffle, ConcurrentDownloads: 2}), common)
		w.points = faults.Arm("webdataset.shard")
		done := make(chan error, 1)
		go func() {
			done <- w.List(context.Background(), func(source.Item) bool { return true }, func(string, string, error) {})
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("List hung after a reader panicked")
		}
		want := "webdataset shard reader: injected panic at webdataset.shard"
		if shuffle {
			want = "webdataset shard slot: injected panic at webdataset.shard"
		}
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
			mu.Lock()
			n, first := len(panics), ""
			if n > 0 {
				first = panics[0]
			}
			mu.Unlock()
			if n == 2 && strings.HasPrefix(first, want) { // both goroutines met the armed point
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("shuffle %v: panics %q, want 2 x %q", shuffle, panics, want)
			}
		}
	}
}
