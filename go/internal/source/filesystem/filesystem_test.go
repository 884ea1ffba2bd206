package filesystem

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/datago-dev/datago/internal/source"
)

func touch(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func list(t *testing.T, cfg Config) []string {
	t.Helper()
	var ids []string
	err := New(cfg, math.MaxInt32).List(context.Background(), func(it source.Item) bool {
		ids = append(ids, it.ID)
		return true
	}, func(id, reason string, err error) { t.Logf("skip %s: %s %v", id, reason, err) })
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(ids)
	return ids
}

func TestFilesystemListsImagesOnceAndFollowsLinksWithoutLooping(t *testing.T) {
	root := t.TempDir()
	want := []string{"a.jpg", "b.JPEG", "sub/c.png", "sub/deep/d.WebP", "sub/deep/e.PNG", "sub/x.gif", "y.BMP"}
	for _, p := range want {
		touch(t, filepath.Join(root, p))
	}
	touch(t, filepath.Join(root, "notes.txt"))
	touch(t, filepath.Join(root, "notes.tiff"))
	if err := os.MkdirAll(filepath.Join(root, "dir.jpg"), 0o755); err != nil { // a directory named like an image
		t.Fatal(err)
	}
	// A cycle, and a second path to an already listed directory.
	if err := os.Symlink(root, filepath.Join(root, "sub", "deep", "loop")); err != nil {
		t.Fatal(err)
	}
	// A link to a file of the tree is not served twice; a link to a file outside the tree is served.
	if err := os.Symlink(filepath.Join(root, "a.jpg"), filepath.Join(root, "sub", "again.jpg")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "outside.png")
	touch(t, outside)
	if err := os.Symlink(outside, filepath.Join(root, "linked.png")); err != nil {
		t.Fatal(err)
	}
	want = append(want, "linked.png")
	got := list(t, Config{RootPath: root, PageSize: 2, WorldSize: 1})
	var wantIDs []string
	for _, p := range want {
		wantIDs = append(wantIDs, filepath.Join(root, p))
	}
	sort.Strings(wantIDs)
	if len(got) != len(wantIDs) {
		t.Fatalf("got %v, want %v", got, wantIDs)
	}
	for i := range got {
		if got[i] != wantIDs[i] {
			t.Fatalf("got %v, want %v", got, wantIDs)
		}
	}
}

func TestFilesystemRanksAreDisjointAndComplete(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 300; i++ {
		touch(t, filepath.Join(root, "d"+string(rune('a'+i%5)), "img"+string(rune('A'+i%26))+string(rune('a'+i/26))+".jpg"))
	}
	all := list(t, Config{RootPath: root, PageSize: 7, WorldSize: 1})
	seen := map[string]int{}
	for rank := 0; rank < 3; rank++ {
		ids := list(t, Config{RootPath: root, PageSize: 7, Rank: rank, WorldSize: 3})
		if len(ids) == 0 {
			t.Errorf("rank %d got nothing", rank)
		}
		for _, id := range ids {
			seen[id]++
		}
	}
	if len(seen) != len(all) {
		t.Fatalf("ranks saw %d distinct files, want %d", len(seen), len(all))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s seen by %d ranks", id, n)
		}
	}
}

func TestFilesystemFetch(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "empty.jpg")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{RootPath: root}, math.MaxInt32).Fetch(context.Background(), source.Item{ID: p, Path: p}); err != source.ErrEmpty {
		t.Fatalf("empty file: got %v, want ErrEmpty", err)
	}
	if _, err := New(Config{RootPath: root}, math.MaxInt32).Fetch(context.Background(), source.Item{Path: p + ".gone"}); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestFilesystemFetchRefusesFilesOverTheLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.png")
	if err := os.WriteFile(p, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	for limit, ok := range map[int64]bool{math.MaxInt32: true, 1000: true, 999: false} {
		raw, err := New(Config{}, limit).Fetch(context.Background(), source.Item{ID: p, Path: p})
		var tl *source.TooLargeError
		if ok && (err != nil || len(raw.Image) != 1000) || !ok && (!errors.As(err, &tl) || tl.Size != 1000) {
			t.Errorf("limit %d: %v", limit, err)
		}
	}
}
