// Command datago runs a loader configuration from the command line and reports its throughput: the
// Go-side ceiling that the Python package's throughput is compared with.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"time"

	"github.com/datago-dev/datago/datago"
)

const usage = `datago runs an image loading configuration and reports its throughput.

Usage:
  datago -config config.json [flags]
  datago -root DIR [-crop] [-size 512] [flags]

The configuration is the JSON accepted by the Python package (datago.Client.from_json); see README.md
for every key. Without -config, one is built from the flags -root, -crop, -size, -pre-encode, -rank,
-world-size. -concurrency and -limit override the configuration either way.

It prints samples/s, MB/s read, MB/s of delivered pixels, and skipped samples by reason; a progress
line is drawn on stderr (-quiet turns it off). -cpuprofile writes a Go CPU profile for 'go tool pprof'.
Run it under the race detector with: go run -race ./cmd/datago -root DIR

Flags:
`

type options struct {
	config, root, cpuProfile  string
	crop, preEncode, quiet    bool
	size, concurrency, limit  int
	rank, worldSize, prefetch int
	samplesBuf                int
}

func main() {
	var o options
	fs := flag.NewFlagSet("datago", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	fs.StringVar(&o.config, "config", "", "JSON configuration file")
	fs.StringVar(&o.root, "root", "", "folder of images (filesystem source), when no -config is given")
	fs.BoolVar(&o.crop, "crop", false, "crop_and_resize to aspect-ratio buckets")
	fs.IntVar(&o.size, "size", 512, "default_image_size of the buckets, with -crop")
	fs.BoolVar(&o.preEncode, "pre-encode", false, "re-encode processed images (pre_encode_images)")
	fs.IntVar(&o.rank, "rank", 0, "rank of this process")
	fs.IntVar(&o.worldSize, "world-size", 1, "number of ranks")
	fs.IntVar(&o.concurrency, "concurrency", 0, "worker goroutines (0: the configuration's, or the number of CPUs)")
	fs.IntVar(&o.limit, "limit", -1, "stop after this many samples (-1: the configuration's; 0: no limit)")
	fs.IntVar(&o.prefetch, "prefetch", 0, "prefetch_buffer_size override (0: keep)")
	fs.IntVar(&o.samplesBuf, "samples-buffer", 0, "samples_buffer_size override (0: keep)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile to this file")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress line on stderr")
	_ = fs.Parse(os.Args[1:])
	if err := run(o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "datago:", err)
		os.Exit(1)
	}
}

func buildConfig(o options) ([]byte, error) {
	var cfg map[string]any
	switch {
	case o.config != "":
		b, err := os.ReadFile(o.config)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", o.config, err)
		}
	case o.root != "":
		cfg = map[string]any{
			"source_type":   "filesystem",
			"source_config": map[string]any{"root_path": o.root, "rank": o.rank, "world_size": o.worldSize},
		}
		if o.crop || o.preEncode {
			cfg["image_config"] = map[string]any{"crop_and_resize": o.crop, "default_image_size": o.size, "pre_encode_images": o.preEncode}
		}
	default:
		return nil, errors.New("give -config FILE or -root DIR (see -help)")
	}
	if o.concurrency > 0 {
		cfg["concurrency"] = o.concurrency
	}
	if o.limit >= 0 {
		cfg["limit"] = o.limit
	}
	if o.prefetch > 0 {
		cfg["prefetch_buffer_size"] = o.prefetch
	}
	if o.samplesBuf > 0 {
		cfg["samples_buffer_size"] = o.samplesBuf
	}
	return json.Marshal(cfg)
}

func run(o options, stdout, stderr io.Writer) error {
	js, err := buildConfig(o)
	if err != nil {
		return err
	}
	// The span starts before the client is made, as a Python or Rust loader's timer does (making
	// the first client initialises libvips, about 30 ms).
	start := time.Now()
	client, err := datago.NewFromJSON(js)
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if err := client.Start(); err != nil {
		return err
	}
	defer client.Stop()
	var n, pixelBytes int64
	lastDraw := start
	limit := client.Config().Limit
	for {
		s, err := client.Next(-1)
		if errors.Is(err, datago.ErrEnd) {
			break
		}
		if err != nil {
			return err
		}
		n++
		if s.Image != nil {
			pixelBytes += int64(s.Image.Len)
		}
		s.Free()
		if now := time.Now(); !o.quiet && now.Sub(lastDraw) > 200*time.Millisecond {
			lastDraw = now
			progress(stderr, n, limit, now.Sub(start))
		}
	}
	elapsed := time.Since(start)
	if !o.quiet {
		progress(stderr, n, limit, elapsed)
		fmt.Fprintln(stderr)
	}
	st := client.Stats()
	secs := elapsed.Seconds()
	fmt.Fprintf(stdout, "samples      %d in %.2fs\n", n, secs)
	fmt.Fprintf(stdout, "samples/s    %.1f\n", float64(n)/secs)
	fmt.Fprintf(stdout, "read MB/s    %.1f\n", float64(st.BytesRead)/secs/1e6)
	fmt.Fprintf(stdout, "output MB/s  %.1f\n", float64(pixelBytes)/secs/1e6)
	reasons := make([]string, 0, len(st.Skipped))
	for r := range st.Skipped {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	fmt.Fprintf(stdout, "skipped      %d\n", st.SkippedTotal)
	for _, r := range reasons {
		fmt.Fprintf(stdout, "  %-12s %d\n", r, st.Skipped[r])
	}
	return nil
}

// progress draws one line: a bar when the total is known (limit), else a counter.
func progress(w io.Writer, n int64, limit int, elapsed time.Duration) {
	rate := float64(n) / max(elapsed.Seconds(), 1e-9)
	if limit > 0 {
		const width = 30
		done := int(int64(width) * min(n, int64(limit)) / int64(limit))
		fmt.Fprintf(w, "\r[%s%s] %d/%d  %.1f samples/s ", strings.Repeat("#", done), strings.Repeat(".", width-done), n, limit, rate)
		return
	}
	fmt.Fprintf(w, "\r%d samples  %.1f samples/s ", n, rate)
}
