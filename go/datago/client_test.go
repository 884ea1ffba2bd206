package datago

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// writeImages writes n small PNGs under root (in a few subfolders) and returns their paths.
func writeImages(t testing.TB, root string, n, w, h int) []string {
	t.Helper()
	var paths []string
	for i := 0; i < n; i++ {
		img := image.NewRGBA(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), uint8(i), 255})
			}
		}
		p := filepath.Join(root, fmt.Sprintf("d%d", i%3), fmt.Sprintf("img%04d.png", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, img); err != nil {
			t.Fatal(err)
		}
		f.Close()
		paths = append(paths, p)
	}
	return paths
}

func newClient(t testing.TB, root, extra string) *Client {
	t.Helper()
	c, err := NewFromJSON([]byte(fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q}%s}`, root, extra)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func drain(t testing.TB, c *Client) map[string]int {
	t.Helper()
	got := map[string]int{}
	for {
		s, err := c.Next(10 * time.Second)
		if errors.Is(err, ErrEnd) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got[s.ID]++
		s.Free()
	}
}

// waitGoroutines waits until the goroutine count is back to at most n.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("leaked goroutines: %d > %d\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPipelineDeliversEveryFileOnceAndSkipsBadOnes(t *testing.T) {
	root := t.TempDir()
	paths := writeImages(t, root, 40, 24, 16)
	bad := map[string][]byte{"corrupt.png": []byte("\x89PNG\r\n\x1a\nnot really"), "empty.jpg": nil, "text.jpg": []byte("hello")}
	for name, b := range bad {
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := runtime.NumGoroutine()
	c := newClient(t, root, `, "concurrency": 4, "prefetch_buffer_size": 3, "samples_buffer_size": 2,
		"image_config": {"crop_and_resize": true, "default_image_size": 64, "downsampling_ratio": 16}`)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	got := drain(t, c)
	c.Stop()
	if len(got) != len(paths) {
		t.Fatalf("got %d samples, want %d", len(got), len(paths))
	}
	for _, p := range paths {
		if got[p] != 1 {
			t.Errorf("%s delivered %d times", p, got[p])
		}
	}
	st := c.Stats()
	if st.Served != int64(len(paths)) || st.SkippedTotal != 3 || st.Skipped[ReasonEmpty] != 1 || st.Skipped[ReasonDecodeError] != 2 {
		t.Fatalf("stats %+v", st)
	}
	if r := c.DrainSkips(); len(r) != 3 || len(c.DrainSkips()) != 0 {
		t.Fatalf("skip reports %+v", r)
	}
	waitGoroutines(t, base)
}

func TestPipelineLimitAndConcurrentConsumers(t *testing.T) {
	root := t.TempDir()
	writeImages(t, root, 60, 8, 8)
	c := newClient(t, root, `, "limit": 25, "concurrency": 3`)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				s, err := c.Next(5 * time.Second)
				if err != nil {
					if !errors.Is(err, ErrEnd) {
						t.Error(err)
					}
					return
				}
				mu.Lock()
				got[s.ID]++
				mu.Unlock()
				s.Free()
			}
		}()
	}
	wg.Wait()
	c.Stop()
	if len(got) != 25 {
		t.Fatalf("limit 25: got %d distinct samples", len(got))
	}
	for id, n := range got {
		if n != 1 {
			t.Fatalf("%s delivered %d times", id, n)
		}
	}
}

func TestStopUnderLoadLeavesNoGoroutine(t *testing.T) {
	root := t.TempDir()
	writeImages(t, root, 200, 64, 48)
	base := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		c := newClient(t, root, `, "concurrency": 4, "samples_buffer_size": 4, "prefetch_buffer_size": 4`)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for j := 0; j < i; j++ { // stop at various points, with full queues
			s, err := c.Next(-1)
			if err != nil {
				t.Fatal(err)
			}
			s.Free()
		}
		c.Stop()
		c.Stop() // idempotent
		if _, err := c.Next(0); !errors.Is(err, ErrEnd) {
			t.Fatalf("Next after Stop: %v", err)
		}
		if err := c.Start(); !errors.Is(err, ErrState) {
			t.Fatalf("restart: %v", err)
		}
	}
	waitGoroutines(t, base)
}

func TestNextStates(t *testing.T) {
	root := t.TempDir()
	c := newClient(t, root, "")
	if _, err := c.Next(0); !errors.Is(err, ErrState) {
		t.Fatalf("Next before Start: %v", err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(time.Second); !errors.Is(err, ErrEnd) {
		t.Fatalf("empty folder: %v", err)
	}
	c.Stop()
}
