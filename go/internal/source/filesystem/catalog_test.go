package filesystem

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/storage"
)

// fakeGCS serves objects through the GCS JSON API the gcs backend speaks: objects.list in pages of
// three (a paginated listing), media downloads with Range.
type fakeGCS struct {
	objects map[string][]byte // name -> bytes, in bucket "b"
	ranges  atomic.Int64
}

func (f *fakeGCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/storage/v1/b/b/o" {
		var names []string
		for n := range f.objects {
			if strings.HasPrefix(n, r.URL.Query().Get("prefix")) && n > r.URL.Query().Get("pageToken") {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		page := map[string]any{}
		if len(names) > 3 {
			names = names[:3]
			page["nextPageToken"] = names[2]
		}
		var items []map[string]string
		for _, n := range names {
			items = append(items, map[string]string{"name": n, "size": strconv.Itoa(len(f.objects[n])), "generation": "1"})
		}
		page["items"] = items
		json.NewEncoder(w).Encode(page)
		return
	}
	data, ok := f.objects[strings.TrimPrefix(r.URL.Path, "/storage/v1/b/b/o/")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("X-Goog-Generation", "1")
	if rng := r.Header.Get("Range"); rng != "" {
		f.ranges.Add(1)
		off, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rng, "bytes="), "-"))
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, len(data)-1, len(data)))
		w.WriteHeader(http.StatusPartialContent)
		w.Write(data[off:])
		return
	}
	w.Write(data)
}

func TestCatalogOfAPrefixIsTheLocalFoldersCatalog(t *testing.T) {
	root := t.TempDir()
	f := &fakeGCS{objects: map[string][]byte{"other/x.jpg": []byte("not under the prefix")}}
	for i := 0; i < 11; i++ {
		rel := fmt.Sprintf("d%d/sub/img%02d.jpg", i%3, i)
		data := bytes.Repeat([]byte{byte('a' + i)}, 10+i*20)
		touch(t, filepath.Join(root, rel))
		if err := os.WriteFile(filepath.Join(root, rel), data, 0o644); err != nil {
			t.Fatal(err)
		}
		f.objects["imgs/"+rel] = data
	}
	f.objects["imgs/notes.txt"] = []byte("not an image")
	srv := httptest.NewServer(f)
	defer srv.Close()
	noSkip := func(id, reason string, err error) { t.Errorf("skip %s %s %v", id, reason, err) }

	local := New(Config{RootPath: root, PageSize: 2, Rank: 1, WorldSize: 3}, math.MaxInt32)
	items, want, err := local.Catalog(context.Background(), noSkip)
	if err != nil || len(want) != 11 || len(items) != 11 {
		t.Fatal(want, err)
	}
	var sc storage.Config
	sc.S3.EndpointURL, sc.S3.Anonymous = srv.URL, true // the gcs backend's endpoint, without credentials
	remote := New(Config{RootPath: "gs://b/imgs", Rank: 1, WorldSize: 3, Storage: sc}, math.MaxInt32)
	ritems, got, err := remote.Catalog(context.Background(), noSkip)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("remote keys %q, local %q", got, want)
	}
	for i, it := range ritems {
		if it.ID != "gs://b/imgs/"+got[i] {
			t.Fatalf("id %s for key %s", it.ID, got[i])
		}
		head, err := remote.Head(context.Background(), it, 64)
		data := f.objects["imgs/"+got[i]]
		if err != nil || !bytes.Equal(head, data[:min(64, len(data))]) {
			t.Fatalf("%s: head %q, %v", it.ID, head, err)
		}
		raw, err := remote.Fetch(context.Background(), it)
		if err != nil || !bytes.Equal(raw.Image, data) {
			t.Fatalf("%s: fetch %v", it.ID, err)
		}
	}
	if f.ranges.Load() != 0 {
		t.Fatal("a head is a read from byte 0")
	}
	var _ source.Headed = remote
}
