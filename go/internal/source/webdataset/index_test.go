package webdataset

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/source"
)

// indexShard is a shard with what the grouping rule must get right: long names (PAX / GNU long-name
// headers before the member's own), directories, __meta__ members inside a sample, masks, bad samples
// (no image, a duplicate suffix, an empty image), a metadata member that only fetching can parse.
func indexShardBytes(t *testing.T) []byte {
	long := strings.Repeat("deep/", 30) + "k"
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name, data string, format tar.Format) {
		hdr := &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data)), Format: format}
		if strings.HasSuffix(name, "/") {
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(data)); err != nil {
			t.Fatal(err)
		}
	}
	add("dir/", "", tar.FormatGNU)
	for i := 0; i < 5; i++ {
		key := fmt.Sprintf("dir/a%02d", i)
		add(key+".jpg", strings.Repeat("j", 700+i), tar.FormatGNU) // crosses a block boundary
		add(key+".seg.png", "mask "+key, tar.FormatGNU)
		add("__meta__/x.json", "{}", tar.FormatGNU)
		add(key+".txt", "caption "+key, tar.FormatGNU)
	}
	add(long+"1.jpg", "long one", tar.FormatPAX)
	add(long+"1.json", `{"a": 1}`, tar.FormatPAX)
	add(long+"2.jpg", "long two", tar.FormatGNU)
	add("noimage.txt", "t", tar.FormatGNU)
	add("dup.jpg", "j", tar.FormatGNU)
	add("dup.txt", "1", tar.FormatGNU)
	add("dup.txt", "2", tar.FormatGNU)
	add("empty.jpg", "", tar.FormatGNU)
	add("badjson.jpg", "j", tar.FormatGNU)
	add("badjson.json", "{", tar.FormatGNU)
	add("z.jpg", "last", tar.FormatGNU)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type skips map[string][]string

func (s skips) add(id, reason string, _ error) { s[reason] = append(s[reason], id) }

// catalogAgainstStream checks that the catalog of cfg lists the samples the streaming path delivers,
// sorted, and that fetching each gives the streamed bytes and metadata.
func catalogAgainstStream(t *testing.T, cfg Config) (*Source, []source.Item) {
	t.Helper()
	w := newSource(withDefaults(cfg), testCommon())
	got := skips{}
	items, keys, err := w.Catalog(context.Background(), got.add)
	if err != nil {
		t.Fatal(err)
	}
	streamCfg := cfg
	streamCfg.ConcurrentDownloads = 1
	streamed := listWDS(t, streamCfg)
	want := map[string]*source.Raw{}
	for _, it := range streamed.items {
		want[it.ID] = it.Raw
	}
	// Metadata members are parsed when fetched: their samples are in the catalog, not in the stream.
	if len(items) != len(keys) || len(items) != len(want)+len(streamed.skipped[source.ReasonBadMetadata]) {
		t.Fatalf("catalog %d items (%d keys), streaming %d", len(items), len(keys), len(want))
	}
	for i, it := range items {
		if keys[i] != it.ID || (i > 0 && keys[i-1] >= keys[i]) {
			t.Fatalf("keys not the sorted ids: %q", keys)
		}
		if it.Raw != nil {
			t.Fatalf("%s: a catalog item carries no bytes", it.ID)
		}
		raw, err := w.Fetch(context.Background(), it)
		if err != nil {
			if want[it.ID] != nil {
				t.Fatalf("%s: %v", it.ID, err)
			}
			continue
		}
		if !reflect.DeepEqual(raw, want[it.ID]) {
			t.Fatalf("%s: fetched %+v, streamed %+v", it.ID, raw, want[it.ID])
		}
	}
	for reason, ids := range streamed.skipped {
		if reason == source.ReasonBadMetadata {
			continue // parsed when fetched: the fetch fails with the same reason (below)
		}
		if !wdsSame(got[reason], ids) {
			t.Errorf("%s: catalog skipped %q, streaming %q", reason, got[reason], ids)
		}
	}
	return w, items
}

func TestCatalogOfLocalShardsMatchesTheStreamingPath(t *testing.T) {
	dir := t.TempDir()
	shards := writeShards(t, dir, 3, 7)
	odd := filepath.Join(dir, "odd.tar")
	if err := os.WriteFile(odd, indexShardBytes(t), 0o644); err != nil {
		t.Fatal(err)
	}
	shards = append(shards, odd)
	cfg := Config{Shards: shards, ReferenceImage: "jpg", Rank: 1, WorldSize: 3}
	w, items := catalogAgainstStream(t, Config{Shards: shards, ReferenceImage: "jpg"})
	if got := len(items); got != 3*7+5+2+1+1 {
		t.Fatalf("%d items", got)
	}
	// Every rank's items, whatever the rank.
	other := newSource(withDefaults(cfg), testCommon())
	again, _, err := other.Catalog(context.Background(), func(string, string, error) {})
	if err != nil || len(again) != len(items) {
		t.Fatalf("rank 1 of 3: %d items, %v", len(again), err)
	}
	if r, world := other.Topology(); r != 1 || world != 3 {
		t.Fatal("topology")
	}
	// The metadata member only fetching parses: the streaming path's reason.
	for _, it := range items {
		if strings.HasSuffix(it.ID, "#badjson") {
			_, err := w.Fetch(context.Background(), it)
			var sr interface{ SkipReason() string }
			if !errors.As(err, &sr) || sr.SkipReason() != source.ReasonBadMetadata {
				t.Fatalf("badjson: %v", err)
			}
		}
		if strings.HasSuffix(it.ID, "#dir/a03") {
			head, err := w.Head(context.Background(), it, 100)
			if err != nil || string(head) != strings.Repeat("j", 100) {
				t.Fatalf("head %q %v", head, err)
			}
			head, err = w.Head(context.Background(), it, 1<<20)
			if err != nil || len(head) != 703 {
				t.Fatalf("head of %d bytes, %v", len(head), err)
			}
			raw, _ := w.Fetch(context.Background(), it)
			if len(raw.Masks) != 1 || string(raw.Masks[0].Data) != "mask dir/a03" || raw.Meta["caption"] != "caption dir/a03" {
				t.Fatalf("masks and metadata as streamed: %+v", raw)
			}
		}
	}
}

func TestCatalogOfHTTPShardsReadsSamplesByRange(t *testing.T) {
	files := map[string][]byte{"/a.tar": wdsShard(t, 0, 9), "/b.tar": indexShardBytes(t)}
	srv := newWDSFaultServer(t, files)
	shards := []string{srv.URL + "/a.tar", srv.URL + "/b.tar", srv.URL + "/gone.tar"}
	_, items := catalogAgainstStream(t, Config{Shards: shards})
	if len(items) != 9+5+2+1+1 {
		t.Fatalf("%d items", len(items))
	}
	closed := 0
	for _, r := range srv.ranges {
		if _, last, _ := strings.Cut(r, "-"); last != "" {
			closed++
		}
	}
	if closed != len(items) { // one closed range per sample: the connection is reused
		t.Fatalf("%d closed ranged reads for %d items: %q", closed, len(items), srv.ranges)
	}
	// A server that ignores Range: the bytes before the sample are skipped.
	srv.mu.Lock()
	srv.noRange = true
	srv.mu.Unlock()
	w := newSource(withDefaults(Config{Shards: shards}), testCommon())
	for _, it := range items[len(items)-3:] {
		raw, err := w.Fetch(context.Background(), it)
		if err != nil || !strings.HasSuffix(it.ID, "#"+raw.Meta["key"].(string)) {
			t.Fatalf("%s without Range: %v", it.ID, err)
		}
	}
}

func TestCatalogRefusesCompressedShards(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.tar.gz")
	if err := os.WriteFile(p, gzipped(t, wdsShard(t, 0, 3)), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newSource(withDefaults(Config{Shards: []string{p}}), testCommon())
	_, _, err := w.Catalog(context.Background(), func(string, string, error) {})
	var ce *confread.Error
	if !errors.As(err, &ce) || ce.Key != "equal_steps" || !strings.Contains(err.Error(), "gzip") {
		t.Fatalf("got %v", err)
	}
}

func TestCatalogOfAChangedShardFailsTheFetch(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "s.tar")
	if err := os.WriteFile(p, wdsShard(t, 0, 4), 0o644); err != nil {
		t.Fatal(err)
	}
	w := newSource(withDefaults(Config{Shards: []string{p}}), testCommon())
	items, _, err := w.Catalog(context.Background(), func(string, string, error) {})
	if err != nil || len(items) != 4 {
		t.Fatal(items, err)
	}
	if err := os.WriteFile(p, wdsShard(t, 1, 4), 0o644); err != nil { // other keys, same layout
		t.Fatal(err)
	}
	if _, err := w.Fetch(context.Background(), items[2]); err == nil || !strings.Contains(err.Error(), "changed since the catalog") {
		t.Fatalf("got %v", err)
	}
}

// readCount counts the bytes read from a file, seeks aside.
type readCount struct {
	f *os.File
	n int64
}

func (r *readCount) Read(p []byte) (int, error) {
	k, err := r.f.Read(p)
	r.n += int64(k)
	return k, err
}

func (r *readCount) Seek(off int64, whence int) (int64, error) { return r.f.Seek(off, whence) }

func TestIndexOfALocalShardReadsHeadersOnly(t *testing.T) {
	big := strings.Repeat("x", 8<<20)
	p := filepath.Join(t.TempDir(), "big.tar")
	data := wdsTar(t, wdsMember{name: "a.jpg", data: big}, wdsMember{name: "a.txt", data: "t"},
		wdsMember{name: "b.jpg", data: big}, wdsMember{name: "c.jpg", data: "small"})
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &readCount{f: f}
	var groups []*Group
	end, err := walkTar(r, 1<<30, true, func(g *Group) bool { groups = append(groups, g); return true })
	if end != endClean || err != nil || len(groups) != 3 {
		t.Fatalf("%v %v %d groups", end, err, len(groups))
	}
	if r.n > 64<<10 {
		t.Fatalf("read %d bytes of a %d-byte shard", r.n, len(data))
	}
	// The ranges tile the archive: each sample from its first header to the end of its last member.
	if groups[0].start != 0 || groups[1].start != groups[0].end || groups[2].start != groups[1].end || groups[2].end%blockSize != 0 {
		t.Fatalf("ranges %d-%d %d-%d %d-%d", groups[0].start, groups[0].end, groups[1].start, groups[1].end, groups[2].start, groups[2].end)
	}
	if got := string(data[groups[2].offsets[0] : groups[2].offsets[0]+groups[2].sizes[0]]); got != "small" {
		t.Fatalf("image offset: %q", got)
	}
}
