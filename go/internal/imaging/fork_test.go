package imaging

import (
	"os"
	"strings"
	"sync"
	"testing"
)

// threadsNamed counts this process's threads whose name starts with prefix.
func threadsNamed(t *testing.T, prefix string) int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Skip("no /proc/self/task")
	}
	n := 0
	for _, task := range tasks {
		comm, err := os.ReadFile("/proc/self/task/" + task.Name() + "/comm")
		if err == nil && strings.HasPrefix(string(comm), prefix) {
			n++
		}
	}
	return n
}

// HoldForFork occupies libvips' idle workers (one helper thread each, at least one) and lets them
// go in ReleaseAfterFork, while other goroutines keep decoding through libvips' thread pool
// (a CMYK JPEG) between holds. The fork itself is tested in tests/test_fork.py.
func TestHoldForFork(t *testing.T) {
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	cmyk, err := vipsEncode(rgbPixels(64, 48, photo(64, 48, 4)), 64, 48, 3, ".jpg", "cmyk", true)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mustProcess(t, cmyk, &Options{}).Free()
			}
		}()
	}
	for i := 0; i < 50; i++ {
		HoldForFork()
		if n := threadsNamed(t, "dg fork hold"); n < 1 {
			t.Fatalf("hold %d: %d holder threads", i, n)
		}
		ReleaseAfterFork()
	}
	close(stop)
	wg.Wait()
	if n := threadsNamed(t, "dg fork hold"); n != 0 {
		t.Fatalf("%d holder threads left after release", n)
	}
}
