package main

import (
	"bytes"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// lockedBuffer is a bytes.Buffer safe for the concurrent test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func isInternal(err error) bool {
	var ie *internalError
	return errors.As(err, &ie)
}

func TestGuardHealthyRunsAndPassesNoError(t *testing.T) {
	var out lockedBuffer
	g := &guard{stderr: &out}
	ran := 0
	for range 3 {
		if err := g.run(func() { ran++ }); err != nil {
			t.Fatalf("run on a healthy guard: %v", err)
		}
	}
	if ran != 3 || g.check() != nil || out.String() != "" {
		t.Fatalf("ran %d times, check %v, stderr %q", ran, g.check(), out.String())
	}
}

func TestGuardFirstPanicPoisons(t *testing.T) {
	var out lockedBuffer
	g := &guard{stderr: &out}
	err := g.run(func() { panic("boom one") })
	if !isInternal(err) || !strings.Contains(err.Error(), "boom one") {
		t.Fatalf("first panic: got %v", err)
	}
	if !strings.Contains(err.Error(), "guard_test.go") {
		t.Errorf("the first panic's message should carry its stack: %q", err)
	}
	printed := out.String()
	if strings.Count(printed, "boom one") != 1 || !strings.Contains(printed, "goroutine") {
		t.Fatalf("stderr should hold the panic and its stack once, got %q", printed)
	}

	// Poisoned: run refuses without calling, naming the first panic.
	called := false
	err = g.run(func() { called = true })
	if called {
		t.Fatal("a poisoned guard ran the function")
	}
	if !isInternal(err) || !strings.Contains(err.Error(), "boom one") || !strings.Contains(err.Error(), "unusable") {
		t.Fatalf("poisoned run: got %v", err)
	}
	if c := g.check(); c == nil || c.Error() != err.Error() {
		t.Fatalf("check = %v, want %v", c, err)
	}

	// protect still runs (C memory frees); a later panic keeps the first one as the poison.
	called = false
	if err := g.protect(func() { called = true }); err != nil || !called {
		t.Fatalf("protect when poisoned: called %v, err %v", called, err)
	}
	err = g.protect(func() { panic("boom two") })
	if !isInternal(err) || !strings.Contains(err.Error(), "boom two") || !strings.Contains(err.Error(), "boom one") {
		t.Fatalf("second panic: got %v", err)
	}
	if strings.Contains(g.check().Error(), "boom two") {
		t.Fatalf("the poison message must name the first panic only: %v", g.check())
	}
	if out.String() != printed {
		t.Fatalf("stderr written again after the first panic: %q", out.String()[len(printed):])
	}
}

func TestGuardPanicWithErrorValue(t *testing.T) {
	g := &guard{stderr: &lockedBuffer{}}
	err := g.run(func() { panic(errors.New("an error value")) })
	if !isInternal(err) || !strings.Contains(g.check().Error(), "an error value") {
		t.Fatalf("got %v / %v", err, g.check())
	}
}

// Many callers panic at once: exactly one becomes the poison, it is printed once, every call
// reports an internal error, and every call after them fails fast.
func TestGuardConcurrentPanics(t *testing.T) {
	var out lockedBuffer
	g := &guard{stderr: &out}
	const n = 64
	var wg sync.WaitGroup
	var internal, healthy atomic.Int64
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := g.run(func() {
				if i%2 == 0 {
					panic("concurrent boom")
				}
			})
			switch {
			case err == nil:
				healthy.Add(1)
			case isInternal(err):
				internal.Add(1)
			default:
				t.Errorf("unexpected error %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if internal.Load() < n/2 || internal.Load()+healthy.Load() != n {
		t.Fatalf("%d internal, %d healthy of %d calls", internal.Load(), healthy.Load(), n)
	}
	if c := strings.Count(out.String(), "concurrent boom"); c != 1 {
		t.Fatalf("the poisoning panic should be printed once, found %d times", c)
	}
	var refused atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.run(func() { t.Error("ran while poisoned") }); isInternal(err) {
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if refused.Load() != n {
		t.Fatalf("%d of %d calls refused after poisoning", refused.Load(), n)
	}
}
