package datago

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"

	"github.com/datago-dev/datago/internal/bucket"
)

// Config is a validated loader configuration. Its JSON form keeps the keys of the original datago.
type Config struct {
	SourceType         string       // canonical name of the source kind
	Source             any          // its parsed source_config, e.g. source.FilesystemConfig
	Image              *ImageConfig // nil: images are decoded and delivered at full size
	PrefetchBufferSize int
	SamplesBufferSize  int
	Concurrency        int
	Limit              int
	MaxFileBytes       int64 // a file (or HTTP body, or tar member) larger than this is skipped as too_large

	// Training integration (README "Training"): epochs to run (0 = forever), delivery in listing
	// order whatever the thread timing, bucketed batches, and a resume state from Client.State.
	Epochs        int
	Deterministic bool
	BatchSize     int // 0: samples, not batches
	DropLast      bool
	Resume        *State
}

// ImageConfig controls the processing applied to every image.
type ImageConfig struct {
	CropAndResize     bool
	DefaultImageSize  int
	DownsamplingRatio int
	MinAspectRatio    float64
	MaxAspectRatio    float64
	PreEncodeImages   bool
	MaxPixels         int64
	Buckets           []bucket.Bucket // derived from the fields above
}

// Default values, documented in README.md.
const (
	DefaultPrefetchBufferSize = 64
	DefaultSamplesBufferSize  = 128
	DefaultImageSize          = 512
	DefaultDownsamplingRatio  = 16
	DefaultMinAspectRatio     = 0.5
	DefaultMaxAspectRatio     = 2.0
	DefaultMaxPixels          = 100_000_000
	DefaultMaxFileBytes       = 256 << 20
	MaxImageSize              = 16384 // default_image_size beyond this is not an image anyone trains on
	MaxBucketSide             = 65535 // the widest bucket a ratio range may produce
	MaxAspectRatio            = 64.0  // min_aspect_ratio >= 1/64, max_aspect_ratio <= 64
	MaxBufferSize             = 1 << 16
	MaxConcurrency            = 1024
)

// ConfigError is a configuration mistake; Key is the path of the offending key, e.g. "source_config.rank".
type ConfigError struct {
	Key string
	Msg string
}

func (e *ConfigError) Error() string { return e.Key + ": " + e.Msg }

// ParseConfig reads, validates and completes a JSON configuration.
func ParseConfig(data []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var raw any
	if err := dec.Decode(&raw); err != nil {
		return nil, &ConfigError{Key: "config", Msg: "invalid JSON: " + err.Error()}
	}
	if dec.More() {
		return nil, &ConfigError{Key: "config", Msg: "invalid JSON: trailing data after the top-level object"}
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, &ConfigError{Key: "config", Msg: "must be a JSON object"}
	}
	r := &reader{}
	cfg := r.config(&object{m: m})
	if r.err != nil {
		return nil, r.err
	}
	return cfg, nil
}

func (r *reader) config(top *object) *Config {
	cfg := &Config{
		PrefetchBufferSize: DefaultPrefetchBufferSize,
		SamplesBufferSize:  DefaultSamplesBufferSize,
		Concurrency:        runtime.NumCPU(),
	}
	r.str(top, "source_type", &cfg.SourceType, true)
	kind := lookupSource(cfg.SourceType)
	if kind == nil && r.err == nil {
		r.fail("source_type", fmt.Sprintf("unknown source type %q (valid: %s)", cfg.SourceType, sourceNames()))
	}
	if sc := r.obj(top, "source_config", true); sc != nil && kind != nil {
		cfg.SourceType = kind.names[0]
		cfg.Source = kind.parse(r, sc)
		r.finish(sc)
	}
	if ic := r.obj(top, "image_config", false); ic != nil {
		cfg.Image = r.imageConfig(ic)
	}
	r.integerIn(top, "prefetch_buffer_size", &cfg.PrefetchBufferSize, 1, MaxBufferSize)
	r.integerIn(top, "samples_buffer_size", &cfg.SamplesBufferSize, 1, MaxBufferSize)
	r.integerIn(top, "concurrency", &cfg.Concurrency, 0, MaxConcurrency)
	if cfg.Concurrency == 0 {
		cfg.Concurrency = runtime.NumCPU()
	}
	r.integer(top, "limit", &cfg.Limit, 0)
	maxFile := DefaultMaxFileBytes
	r.integer(top, "max_file_bytes", &maxFile, 1)
	cfg.MaxFileBytes = int64(maxFile)
	cfg.Epochs = 1
	r.integer(top, "epochs", &cfg.Epochs, 0)
	r.boolean(top, "deterministic", &cfg.Deterministic)
	r.integerIn(top, "batch_size", &cfg.BatchSize, 0, MaxBufferSize)
	r.boolean(top, "drop_last", &cfg.DropLast)
	if o := r.obj(top, "resume_state", false); o != nil && r.err == nil {
		cfg.Resume, r.err = parseState(o.m)
	}
	r.finish(top)
	if r.err == nil && cfg.BatchSize > 0 && (cfg.Image == nil || !cfg.Image.CropAndResize) {
		r.fail("batch_size", "needs image_config.crop_and_resize: a batch stacks images of one bucket")
	} else if r.err == nil && cfg.BatchSize > 0 && cfg.Image.PreEncodeImages {
		r.fail("batch_size", "cannot stack encoded images (image_config.pre_encode_images)")
	}
	return cfg
}

func (r *reader) imageConfig(o *object) *ImageConfig {
	ic := &ImageConfig{
		DefaultImageSize:  DefaultImageSize,
		DownsamplingRatio: DefaultDownsamplingRatio,
		MinAspectRatio:    DefaultMinAspectRatio,
		MaxAspectRatio:    DefaultMaxAspectRatio,
		MaxPixels:         DefaultMaxPixels,
	}
	r.boolean(o, "crop_and_resize", &ic.CropAndResize)
	r.integer(o, "default_image_size", &ic.DefaultImageSize, 1)
	r.integer(o, "downsampling_ratio", &ic.DownsamplingRatio, 1)
	r.float(o, "min_aspect_ratio", &ic.MinAspectRatio)
	r.float(o, "max_aspect_ratio", &ic.MaxAspectRatio)
	r.boolean(o, "pre_encode_images", &ic.PreEncodeImages)
	maxPixels := int(ic.MaxPixels)
	r.integer(o, "max_pixels", &maxPixels, 1)
	ic.MaxPixels = int64(maxPixels)
	r.finish(o)
	if r.err != nil {
		return ic
	}
	switch {
	case ic.MinAspectRatio <= 0:
		r.fail(o.path+".min_aspect_ratio", fmt.Sprintf("must be > 0, got %g", ic.MinAspectRatio))
	case ic.MinAspectRatio < 1/MaxAspectRatio:
		r.fail(o.path+".min_aspect_ratio", fmt.Sprintf("must be >= 1/%g, got %g", MaxAspectRatio, ic.MinAspectRatio))
	case ic.MaxAspectRatio <= 0:
		r.fail(o.path+".max_aspect_ratio", fmt.Sprintf("must be > 0, got %g", ic.MaxAspectRatio))
	case ic.MaxAspectRatio > MaxAspectRatio:
		r.fail(o.path+".max_aspect_ratio", fmt.Sprintf("must be <= %g, got %g", MaxAspectRatio, ic.MaxAspectRatio))
	case ic.MinAspectRatio > ic.MaxAspectRatio:
		r.fail(o.path+".min_aspect_ratio", fmt.Sprintf("must be <= max_aspect_ratio (%g), got %g", ic.MaxAspectRatio, ic.MinAspectRatio))
	case ic.DefaultImageSize > MaxImageSize:
		r.fail(o.path+".default_image_size", fmt.Sprintf("must be <= %d, got %d", MaxImageSize, ic.DefaultImageSize))
	case ic.DefaultImageSize%ic.DownsamplingRatio != 0:
		r.fail(o.path+".default_image_size", fmt.Sprintf("must be a multiple of downsampling_ratio (%d), got %d", ic.DownsamplingRatio, ic.DefaultImageSize))
	}
	if r.err == nil && ic.CropAndResize {
		ic.Buckets = bucket.Buckets(ic.DefaultImageSize, ic.DownsamplingRatio, ic.MinAspectRatio, ic.MaxAspectRatio)
		if len(ic.Buckets) == 0 {
			r.fail(o.path+".min_aspect_ratio", fmt.Sprintf("no aspect-ratio bucket lies between %g and %g at this size", ic.MinAspectRatio, ic.MaxAspectRatio))
		}
		for _, b := range ic.Buckets {
			if b.Width > MaxBucketSide || b.Height > MaxBucketSide {
				r.fail(o.path+".default_image_size", fmt.Sprintf("gives a %dx%d bucket with these aspect ratios; sides are limited to %d", b.Width, b.Height, MaxBucketSide))
				break
			}
		}
	}
	return ic
}

// object is a JSON object being read; used records the keys consumed so unknown ones can be reported.
type object struct {
	path string
	m    map[string]any
	used []string
}

func (o *object) key(k string) string {
	if o.path == "" {
		return k
	}
	return o.path + "." + k
}

func (o *object) get(k string) (any, bool) {
	o.used = append(o.used, k)
	v, ok := o.m[k]
	return v, ok && v != nil
}

// reader keeps the first error; later reads are no-ops so the first mistake is the one reported.
type reader struct{ err *ConfigError }

func (r *reader) fail(key, msg string) {
	if r.err == nil {
		r.err = &ConfigError{Key: key, Msg: msg}
	}
}

// value returns the value of key k of o; false when it is absent (a failure if it is required) or
// when an earlier key already failed, so that the first mistake is the one reported.
func (r *reader) value(o *object, k string, required bool) (any, bool) {
	v, ok := o.get(k)
	if r.err != nil {
		return nil, false
	}
	if !ok && required {
		r.fail(o.key(k), "is required")
	}
	return v, ok
}

func (r *reader) str(o *object, k string, dst *string, required bool) {
	v, ok := r.value(o, k, required)
	if !ok {
		return
	}
	s, isStr := v.(string)
	if !isStr {
		r.fail(o.key(k), "must be a string, got "+jsonType(v))
		return
	}
	if required && s == "" {
		r.fail(o.key(k), "must not be empty")
		return
	}
	*dst = s
}

func (r *reader) boolean(o *object, k string, dst *bool) {
	v, ok := r.value(o, k, false)
	if !ok {
		return
	}
	b, isBool := v.(bool)
	if !isBool {
		r.fail(o.key(k), "must be a boolean, got "+jsonType(v))
		return
	}
	*dst = b
}

func (r *reader) integer(o *object, k string, dst *int, min int) {
	r.integerIn(o, k, dst, min, math.MaxInt)
}

func (r *reader) integerIn(o *object, k string, dst *int, min, max int) {
	v, ok := r.value(o, k, false)
	if !ok {
		return
	}
	n, isNum := v.(json.Number)
	if !isNum {
		r.fail(o.key(k), "must be an integer, got "+jsonType(v))
		return
	}
	i, err := n.Int64()
	if err != nil {
		r.fail(o.key(k), "must be an integer, got "+n.String())
		return
	}
	if i < int64(min) {
		r.fail(o.key(k), fmt.Sprintf("must be >= %d, got %d", min, i))
		return
	}
	if i > int64(max) {
		r.fail(o.key(k), fmt.Sprintf("must be <= %d, got %d", max, i))
		return
	}
	*dst = int(i)
}

func (r *reader) float(o *object, k string, dst *float64) {
	v, ok := r.value(o, k, false)
	if !ok {
		return
	}
	n, isNum := v.(json.Number)
	if !isNum {
		r.fail(o.key(k), "must be a number, got "+jsonType(v))
		return
	}
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		r.fail(o.key(k), "must be a finite number, got "+n.String())
		return
	}
	*dst = f
}

func (r *reader) obj(o *object, k string, required bool) *object {
	v, ok := r.value(o, k, required)
	if !ok {
		return nil
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		r.fail(o.key(k), "must be an object, got "+jsonType(v))
		return nil
	}
	return &object{path: o.key(k), m: m}
}

// finish reports the first unknown key of o, with the closest valid name.
func (r *reader) finish(o *object) {
	if r.err != nil {
		return
	}
	var unknown []string
	for k := range o.m {
		if !contains(o.used, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return
	}
	sort.Strings(unknown)
	msg := "unknown key"
	if best := closest(unknown[0], o.used); best != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", best)
	} else {
		valid := append([]string(nil), o.used...)
		sort.Strings(valid)
		msg += fmt.Sprintf(" (valid keys: %s)", strings.Join(valid, ", "))
	}
	name := unknown[0]
	if name == "" {
		name = `""` // the empty key, which would otherwise leave the path blank
	}
	r.fail(o.key(name), msg)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// closest returns the candidate with the smallest edit distance to s, if it is plausibly a typo.
func closest(s string, candidates []string) string {
	best, bestDist := "", len(s)/2+2
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func jsonType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return "null"
}

// ParseImageConfig validates an image_config object on its own (used to compute buckets for callers).
func ParseImageConfig(data []byte) (*ImageConfig, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, &ConfigError{Key: "image_config", Msg: "invalid JSON: " + err.Error()}
	}
	r := &reader{}
	ic := r.imageConfig(&object{path: "image_config", m: m})
	if r.err != nil {
		return nil, r.err
	}
	return ic, nil
}

// rankAndWorld reads source_config.rank and source_config.world_size, shared by every source.
func (r *reader) rankAndWorld(sc *object, rank, world *int) {
	r.integer(sc, "rank", rank, 0)
	r.integer(sc, "world_size", world, 1)
	if r.err == nil && *rank >= *world {
		r.fail(sc.key("rank"), fmt.Sprintf("must be < world_size (%d), got %d", *world, *rank))
	}
}
