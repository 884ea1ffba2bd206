package datago

import (
	"context"
	"errors"
	"fmt"
	"image"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/faults"
	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/testimg"
)

// A panic in a goroutine of the run fails the client (an error from Next, never a dead process),
// stops every stage and leaves no goroutine behind.
func TestPanicInAStageFailsTheClient(t *testing.T) {
	root := t.TempDir()
	testimg.WriteFolder(t, root, 40, 16, 16)
	for _, tc := range []struct{ point, extra string }{
		{"list", ""},
		{"collect", `, "deterministic": true`},
		{"collect", `, "batch_size": 4, "image_config": {"crop_and_resize": true, "default_image_size": 64}`},
	} {
		t.Run(tc.point+tc.extra, func(t *testing.T) {
			base := runtime.NumGoroutine()
			c := openClient(t, root, tc.extra)
			c.faults = faults.Arm(tc.point)
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			var err error
			deadline := time.Now().Add(10 * time.Second)
			for err == nil && time.Now().Before(deadline) {
				if c.cfg.BatchSize > 0 {
					var b *Batch
					b, err = c.NextBatch(time.Second)
					b.Free()
				} else {
					var s *Sample
					s, err = c.Next(time.Second)
					s.Free()
				}
				if errors.Is(err, ErrTimeout) {
					err = nil
				}
			}
			if err == nil || errors.Is(err, ErrEnd) || !strings.Contains(err.Error(), "internal error in the") ||
				!strings.Contains(err.Error(), "injected panic at "+tc.point) {
				t.Fatalf("want the injected panic as the client's error, got %v", err)
			}
			c.Stop()
			waitGoroutines(t, base)
		})
	}
}

// A panic met while fetching or decoding one sample costs that sample (internal_error), not the run.
func TestPanicOnOneSampleIsASkip(t *testing.T) {
	root := t.TempDir()
	testimg.WriteFolder(t, root, 12, 16, 16)
	for _, point := range []string{"fetch", "decode"} {
		t.Run(point, func(t *testing.T) {
			c := openClient(t, root, `, "concurrency": 2`)
			c.faults = faults.Arm(point)
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			if got := drain(t, c); len(got) != 0 {
				t.Fatalf("every sample panicked, yet %d were delivered", len(got))
			}
			c.Stop()
			st := c.Stats()
			if st.Skipped[ReasonInternal] != 12 {
				t.Fatalf("want 12 internal_error skips, got %v", st.Skipped)
			}
			for _, r := range c.DrainSkips() {
				if !strings.Contains(r.Message, "injected panic at "+point) {
					t.Fatalf("skip report %+v does not carry the panic", r)
				}
			}
		})
	}
}

// stuckSource lists n items; Fetch of the first blocks, ignoring its context, until release is
// closed (a read the kernel will not interrupt); the others fetch at once.
type stuckSource struct {
	n       int
	raw     *source.Raw
	release chan struct{}
	entered chan struct{}
}

func (s *stuckSource) List(ctx context.Context, emit func(source.Item) bool, _ func(string, string, error)) error {
	for i := 0; i < s.n; i++ {
		if !emit(source.Item{ID: fmt.Sprint(i)}) {
			return nil
		}
	}
	return nil
}

func (s *stuckSource) Fetch(_ context.Context, it source.Item) (*source.Raw, error) {
	if it.ID == "0" {
		close(s.entered)
		<-s.release
	}
	return s.raw, nil
}

// Stop returns after StopGrace even with a worker blocked in an uncancellable read; the worker is
// counted as abandoned, and what it makes once its read returns is freed, not delivered.
func TestStopAbandonsAStuckRead(t *testing.T) {
	base := runtime.NumGoroutine()
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	src := &stuckSource{n: 50, raw: &source.Raw{Image: testimg.PNG(t, img)}, release: make(chan struct{}), entered: make(chan struct{})}
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q}, "concurrency": 2}`, t.TempDir())))
	if err != nil {
		t.Fatal(err)
	}
	c, err := newClient(cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	<-src.entered
	for i := 0; i < 10; i++ { // the other items still arrive
		s, err := c.Next(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		s.Free()
	}
	t0 := time.Now()
	c.Stop()
	if took := time.Since(t0); took > StopGrace+time.Second {
		t.Fatalf("Stop took %v with a stuck read", took)
	}
	if a := c.Stats().Abandoned; a < 1 {
		t.Fatalf("abandoned = %d, want the stuck fetcher counted", a)
	}
	if _, err := c.Next(0); !errors.Is(err, ErrEnd) {
		t.Fatalf("Next after Stop: %v", err)
	}
	close(src.release) // the read returns: its goroutine ends, its sample is freed
	waitGoroutines(t, base)
}
