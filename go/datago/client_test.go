package datago

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/testimg"
)

func openClient(t testing.TB, root, extra string) *Client {
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
	paths := testimg.WriteFolder(t, root, 40, 24, 16)
	bad := map[string][]byte{"corrupt.png": []byte("\x89PNG\r\n\x1a\nnot really"), "empty.jpg": nil, "text.jpg": []byte("hello")}
	for name, b := range bad {
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := runtime.NumGoroutine()
	c := openClient(t, root, `, "concurrency": 4, "prefetch_buffer_size": 3, "samples_buffer_size": 2,
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
	testimg.WriteFolder(t, root, 60, 8, 8)
	c := openClient(t, root, `, "limit": 25, "concurrency": 3`)
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
	testimg.WriteFolder(t, root, 200, 64, 48)
	base := runtime.NumGoroutine()
	for i := 0; i < 20; i++ {
		c := openClient(t, root, `, "concurrency": 4, "samples_buffer_size": 4, "prefetch_buffer_size": 4`)
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
	c := openClient(t, root, "")
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

// memSource serves items whose bytes are already in memory, as archive sources do.
type memSource struct{ items []source.Item }

func (m *memSource) List(ctx context.Context, emit func(source.Item) bool, _ func(string, string, error)) error {
	for _, it := range m.items {
		if !emit(it) {
			return nil
		}
	}
	return nil
}

func (m *memSource) Fetch(context.Context, source.Item) (*source.Raw, error) {
	return nil, errors.New("items carry their bytes")
}

func TestMasksAndExtrasStayAlignedWithTheImage(t *testing.T) {
	const w, h = 300, 100 // wider than every bucket: the crop drops columns on both sides
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	mask := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), 0, 0, 255})
			if x >= w/2 { // right half marked
				mask.SetGray(x, y, color.Gray{255})
			}
		}
	}
	raw := &source.Raw{
		Image:            testimg.PNG(t, img),
		Masks:            []source.Named{{Name: "half", Data: testimg.PNG(t, mask)}},
		AdditionalImages: []source.Named{{Name: "copy", Data: testimg.PNG(t, img)}},
		Bytes:            []source.Named{{Name: "latent", Data: []byte{1, 2, 3}}},
		Meta:             map[string]any{"caption": "a red ramp", "label": 3},
	}
	bad := &source.Raw{Image: raw.Image, Masks: []source.Named{{Name: "broken", Data: []byte("nope")}}}
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`{"source_type": "file", "source_config": {"root_path": %q},
		"image_config": {"crop_and_resize": true, "default_image_size": 64, "downsampling_ratio": 16}}`, t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	c, err := newClient(cfg, &memSource{items: []source.Item{{ID: "good", Raw: raw}, {ID: "bad", Raw: bad}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	s, err := c.Next(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Free()
	if _, err := c.Next(10 * time.Second); !errors.Is(err, ErrEnd) {
		t.Fatalf("the sample with a broken mask must be skipped, got %v", err)
	}
	if st := c.Stats(); st.Skipped[ReasonDecodeError] != 1 {
		t.Fatalf("stats %+v", st)
	}
	if len(s.Items) != 3 || s.Items[0].Kind != ItemMask || s.Items[1].Kind != ItemAdditionalImage || s.Items[2].Kind != ItemBytes {
		t.Fatalf("items %+v", s.Items)
	}
	m, extra := s.Items[0].Image, s.Items[1].Image
	if m.Width != s.Image.Width || m.Height != s.Image.Height || m.Channels != 1 || extra.Width != s.Image.Width || extra.Height != s.Image.Height {
		t.Fatalf("image %dx%d, mask %dx%dx%d, extra %dx%d", s.Image.Width, s.Image.Height, m.Width, m.Height, m.Channels, extra.Width, extra.Height)
	}
	// The mask edge lands where the image's red ramp crosses the original's middle value.
	pix, mpix := s.Image.Bytes(), m.Bytes()
	for x := 0; x < m.Width; x++ {
		red := pix[3*x]
		if marked := mpix[x] == 255; marked != (red >= 128) && red != 127 && red != 128 {
			t.Fatalf("column %d: mask %d, red %d: mask and image are not aligned", x, mpix[x], red)
		}
	}
	if !bytes.Equal(pix, extra.Bytes()) {
		t.Fatal("the additional image differs from the identical main image")
	}
	if string(s.Items[2].Bytes) != "\x01\x02\x03" || string(s.Meta) != `{"caption":"a red ramp","item_original_sizes":{"copy":[300,100],"half":[300,100]},"label":3}` {
		t.Fatalf("bytes %v, meta %s", s.Items[2].Bytes, s.Meta)
	}
}

func TestListingStreams(t *testing.T) {
	root := t.TempDir()
	var png bytes.Buffer
	testimg.WriteFolder(t, root, 1, 4, 4)
	first, err := os.ReadFile(filepath.Join(root, "d0", "img0000.png"))
	if err != nil {
		t.Fatal(err)
	}
	png.Write(first)
	const n = 3000
	for i := 0; i < n; i++ {
		p := filepath.Join(root, fmt.Sprintf("s%02d", i%30), fmt.Sprintf("%05d.png", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, png.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := openClient(t, root, `, "prefetch_buffer_size": 8, "samples_buffer_size": 8, "concurrency": 2`)
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	s, err := c.Next(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s.Free()
	time.Sleep(100 * time.Millisecond) // let every stage fill up
	// The lister is held back by the bounded queues: it has not walked the tree ahead of the workers.
	// Bound: the item queue, one item per fetcher, the fetched queue and one per decoder, the ready queue.
	const concurrency = 2
	if listed := c.Stats().Listed; listed > 8+FetchersPerWorker*concurrency+concurrency+concurrency+8+1 {
		t.Fatalf("%d of %d files listed with one sample consumed: the listing does not stream", listed, n)
	}
}
