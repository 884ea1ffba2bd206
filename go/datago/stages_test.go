package datago

import (
	"context"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/testimg"
)

// slowSource lists n items at once and takes delay to fetch each: a slow disk or network.
type slowSource struct {
	n     int
	delay time.Duration
	data  []byte
}

func (s *slowSource) List(ctx context.Context, emit func(source.Item) bool, _ func(string, string, error)) error {
	for i := 0; i < s.n; i++ {
		if !emit(source.Item{ID: strconv.Itoa(i)}) {
			return nil
		}
	}
	return nil
}

func (s *slowSource) Fetch(ctx context.Context, it source.Item) (*source.Raw, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &source.Raw{Image: s.data}, nil
}

// run drains c for d (or to its end), sleeping pause after each sample, and returns its stats.
func runFor(t *testing.T, c *Client, d, pause time.Duration) Stats {
	t.Helper()
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		s, err := c.Next(time.Second)
		if errors.Is(err, ErrEnd) {
			break
		}
		if err != nil && !errors.Is(err, ErrTimeout) {
			t.Fatal(err)
		}
		s.Free()
		time.Sleep(pause)
	}
	return c.Stats()
}

func TestStagesNameTheSlowStage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs pipelines for seconds")
	}
	root := t.TempDir()
	paths := testimg.WriteFolder(t, root, 1, 32, 32)
	png, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}

	t.Run("source", func(t *testing.T) {
		cfg, err := ParseConfig([]byte(`{"source_type": "filesystem", "source_config": {"root_path": "/"}, "concurrency": 2}`))
		if err != nil {
			t.Fatal(err)
		}
		c, err := newClient(cfg, &slowSource{n: 1 << 20, delay: 20 * time.Millisecond, data: png})
		if err != nil {
			t.Fatal(err)
		}
		st := runFor(t, c, 1500*time.Millisecond, 0)
		if st.Bottleneck != BottleneckSource {
			t.Fatalf("fetching at 20 ms a sample: want source, got %q (%+v)", st.Bottleneck, stagesOf(st))
		}
		if f := st.Stages["fetch"]; f.RecentUtilization < 0.9 || f.Workers != 8 {
			t.Fatalf("fetchers should be busy all the time: %+v", f)
		}
	})
	t.Run("consumer", func(t *testing.T) {
		c := openClient(t, root, `, "epochs": 0, "samples_buffer_size": 8`)
		st := runFor(t, c, 1500*time.Millisecond, 10*time.Millisecond)
		if st.Bottleneck != BottleneckConsumer {
			t.Fatalf("a consumer sleeping 10 ms: want consumer, got %q (%+v)", st.Bottleneck, stagesOf(st))
		}
		if r := st.Stages["ready"]; r.RecentQueueFill < 0.5 || r.QueueCapacity != 8 {
			t.Fatalf("the ready queue should stay full: %+v", r)
		}
		if u := st.Stages["consumer"].RecentUtilization; u < 0.8 {
			t.Fatalf("the consumer should be busy: %v", u)
		}
	})
}

func TestStageCountsMatchTheRun(t *testing.T) {
	root := t.TempDir()
	testimg.WriteFolder(t, root, 30, 16, 16)
	c := openClient(t, root, `, "concurrency": 2, "deterministic": true`)
	if st := c.Stats(); st.Stages != nil || st.Bottleneck != "" {
		t.Fatalf("before Start: %+v", st.Stages)
	}
	st := runFor(t, c, 10*time.Second, 0)
	for name, want := range map[string]int64{"list": 30, "fetch": 30, "decode": 30, "collect": 30, "consumer": 30} {
		s := st.Stages[name]
		if s == nil || s.Items != want || s.BusyS < 0 || s.Utilization < 0 {
			t.Fatalf("%s: want %d items, got %+v", name, want, s)
		}
	}
	if st.Stages["decode"].Queue != "outcomes" || st.Stages["collect"].Queue != "ready" {
		t.Fatalf("decode: %+v, collect: %+v", st.Stages["decode"], st.Stages["collect"])
	}
}

func TestVerdictRule(t *testing.T) {
	mk := func(ready, decodeBusy, fetched float64) map[string]*StageStats {
		return map[string]*StageStats{
			"ready":  {RecentQueueFill: ready},
			"decode": {RecentUtilization: decodeBusy},
			"fetch":  {RecentQueueFill: fetched},
		}
	}
	for _, tc := range []struct {
		ready, decode, fetched float64
		want                   string
	}{
		{0.9, 1, 0, BottleneckConsumer}, // a full ready queue wins: the decoders wait for room
		{0.1, 0.95, 0.9, BottleneckDecode},
		{0.1, 0.3, 0.05, BottleneckSource},
		{0.1, 0.5, 0.6, BottleneckBalanced},
	} {
		if got := verdict(mk(tc.ready, tc.decode, tc.fetched)); got != tc.want {
			t.Errorf("%+v: got %q", tc, got)
		}
	}
}

func stagesOf(st Stats) map[string]StageStats {
	out := map[string]StageStats{}
	for k, v := range st.Stages {
		out[k] = *v
	}
	return out
}

// BenchmarkStageHooks is the stage timing's cost per sample on its path: what the list, fetch,
// decode and consumer stages do for one sample (tests/bench/stage_cost.py divides it by the CPU
// a sample costs). The sampler's ticks (50 a second) are not per sample.
func BenchmarkStageHooks(b *testing.B) {
	var s stageClocks
	s.begin([nStages]int{1, 1, 1, 0, 1}, [nQueues]int{1, 1, 0, 1})
	for i := 0; i < b.N; i++ {
		s.clock[stList].leave()
		s.clock[stList].enter()
		s.clock[stFetch].enter()
		s.clock[stFetch].leave()
		s.clock[stDecode].enter()
		s.clock[stDecode].leave()
		s.waitIn()
		s.waitOut()
	}
}
