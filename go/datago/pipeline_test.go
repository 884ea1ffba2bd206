package datago

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/faults"
)

// A panic in a goroutine of the run fails the client (an error from Next, never a dead process),
// stops every stage and leaves no goroutine behind.
func TestPanicInAStageFailsTheClient(t *testing.T) {
	root := t.TempDir()
	writeImages(t, root, 40, 16, 16)
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
	writeImages(t, root, 12, 16, 16)
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
