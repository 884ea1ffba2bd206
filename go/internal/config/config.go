// Package config is the loader's configuration: the JSON keys of the original datago, read with
// their defaults and checked, each mistake a *confread.Error naming its key. source_config is read
// by the source kind that source_type names (sources.go). Pure Go: it builds, tests and fuzzes
// without cgo.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/datago-dev/datago/internal/bucket"
	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/resume"
	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/source/httpretry"
)

// Config is a validated loader configuration. Its JSON form keeps the keys of the original datago.
type Config struct {
	SourceType         string        // canonical name of the source kind
	Source             source.Config // its parsed source_config
	Image              *ImageConfig  // nil: images are decoded and delivered at full size
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
	Resume        *resume.State
	// EqualSteps is equal_steps: "off", or "pad" / "drop", a planned run where every share gets the
	// same number of samples per epoch and the resume state is valid across topologies (package plan).
	EqualSteps string
	// BucketPerStep is bucket_per_step: with batch_size, a planned run where at step k every share
	// yields a batch of one bucket and one size (package plan, the aligned layout).
	BucketPerStep bool
}

// Planned reports whether the run is planned (equal_steps or bucket_per_step).
func (c *Config) Planned() bool { return c.EqualSteps != EqualStepsOff || c.BucketPerStep }

// The values of equal_steps.
const (
	EqualStepsOff  = "off"
	EqualStepsPad  = "pad"
	EqualStepsDrop = "drop"
)

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

	// Output knobs (README "Image conversion"); the same keys as Photoroom's Rust loader.
	ImageToRGB8     bool     // true: 8-bit RGB; false: native modes (L, LA, RGB, RGBA, 8 or 16 bits)
	EncodeFormat    string   // with PreEncodeImages: "jpeg", "png" or "webp" (masks: always PNG)
	JPEGQuality     int      // JPEG and WebP quality, 0..100
	AlphaBackground [3]uint8 // what transparent pixels are flattened onto
	KeepAlpha       bool     // alpha_background "keep" (and the default of native modes): alpha delivered, nothing flattened
	AlphaMask       string   // non-empty: flattened, and the alpha delivered as the mask of this name
}

// Encode formats of image_config.encode_format.
var EncodeFormats = []string{"jpeg", "png", "webp"}

// AlphaBackgrounds are the named values of image_config.alpha_background. "gray" is the 128 grey
// the Rust loader composites onto; white is datago's (and the original Go datago's) default.
var AlphaBackgrounds = map[string][3]uint8{
	"white": {255, 255, 255},
	"black": {0, 0, 0},
	"gray":  {128, 128, 128},
	"grey":  {128, 128, 128},
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
	DefaultEncodeFormat       = "jpeg"
	DefaultJPEGQuality        = 95
	MaxImageSize              = 16384 // default_image_size beyond this is not an image anyone trains on
	MaxBucketSide             = 65535 // the widest bucket a ratio range may produce
	MaxAspectRatio            = 64.0  // min_aspect_ratio >= 1/64, max_aspect_ratio <= 64
	MaxBufferSize             = 1 << 16
	MaxConcurrency            = 1024
	EnvMaxTasks               = "DATAGO_MAX_TASKS"
)

// Parse reads, validates and completes a JSON configuration. Its error is a *confread.Error.
func Parse(data []byte) (*Config, error) {
	raw, derr := confread.Decode(data, "config")
	if derr != nil {
		return nil, derr
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return nil, &confread.Error{Key: "config", Msg: "must be a JSON object"}
	}
	r := &confread.Reader{}
	cfg := readConfig(r, confread.NewObject("", m))
	if err := r.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func readConfig(r *confread.Reader, top *confread.Object) *Config {
	cfg := &Config{
		PrefetchBufferSize: DefaultPrefetchBufferSize,
		SamplesBufferSize:  DefaultSamplesBufferSize,
		Concurrency:        runtime.NumCPU(),
	}
	r.Str(top, "source_type", &cfg.SourceType, true)
	kind := lookupKind(cfg.SourceType)
	if kind == nil && !r.Failed() {
		r.Fail("source_type", fmt.Sprintf("unknown source type %q (valid: %s)", cfg.SourceType, kindNames()))
	}
	if sc := r.Obj(top, "source_config", true); sc != nil && kind != nil {
		cfg.SourceType = kind.Names[0]
		cfg.Source = kind.Parse(r, sc)
		r.Finish(sc)
	}
	if ic := r.Obj(top, "image_config", false); ic != nil {
		cfg.Image = readImageConfig(r, ic)
	}
	r.IntegerIn(top, "prefetch_buffer_size", &cfg.PrefetchBufferSize, 1, MaxBufferSize)
	r.IntegerIn(top, "samples_buffer_size", &cfg.SamplesBufferSize, 1, MaxBufferSize)
	// DATAGO_MAX_TASKS (the Rust loader's variable) replaces the default; the key still wins.
	// Its 0 means serial processing there, so it is one worker here.
	envTasks := -1
	httpretry.EnvDefault(r, EnvMaxTasks, &envTasks, 0, MaxConcurrency)
	if envTasks >= 0 {
		cfg.Concurrency = max(1, envTasks)
	}
	r.IntegerIn(top, "concurrency", &cfg.Concurrency, 0, MaxConcurrency)
	if cfg.Concurrency == 0 {
		cfg.Concurrency = runtime.NumCPU()
	}
	r.Integer(top, "limit", &cfg.Limit, 0)
	maxFile := DefaultMaxFileBytes
	r.Integer(top, "max_file_bytes", &maxFile, 1)
	cfg.MaxFileBytes = int64(maxFile)
	cfg.Epochs = 1
	r.Integer(top, "epochs", &cfg.Epochs, 0)
	r.Boolean(top, "deterministic", &cfg.Deterministic)
	r.IntegerIn(top, "batch_size", &cfg.BatchSize, 0, MaxBufferSize)
	r.Boolean(top, "drop_last", &cfg.DropLast)
	cfg.EqualSteps = EqualStepsOff
	r.Str(top, "equal_steps", &cfg.EqualSteps, false)
	r.Boolean(top, "bucket_per_step", &cfg.BucketPerStep)
	switch cfg.EqualSteps {
	case EqualStepsOff, EqualStepsPad, EqualStepsDrop:
	default:
		if !r.Failed() {
			r.Fail("equal_steps", fmt.Sprintf("must be %q, %q or %q, got %q", EqualStepsOff, EqualStepsPad, EqualStepsDrop, cfg.EqualSteps))
		}
	}
	if o := r.Obj(top, "resume_state", false); o != nil && !r.Failed() {
		var err *confread.Error
		cfg.Resume, err = resume.Parse(o.Map())
		r.FailWith(err)
	}
	r.Finish(top)
	if !r.Failed() {
		settleSeed(r, cfg)
	}
	if !r.Failed() && cfg.BatchSize > 0 && (cfg.Image == nil || !cfg.Image.CropAndResize) {
		r.Fail("batch_size", "needs image_config.crop_and_resize: a batch stacks images of one bucket")
	} else if !r.Failed() && cfg.BatchSize > 0 && cfg.Image.PreEncodeImages {
		r.Fail("batch_size", "cannot stack encoded images (image_config.pre_encode_images)")
	} else if !r.Failed() && cfg.BatchSize > 0 && !cfg.Image.ImageToRGB8 {
		r.Fail("batch_size", "cannot stack images of different modes (image_config.image_to_rgb8 false): a batch is one array, set image_to_rgb8 true")
	} else if !r.Failed() && cfg.BatchSize > 0 && cfg.Image.AlphaMask != "" {
		r.Fail("batch_size", "batches deliver no masks (image_config.alpha_mask)")
	} else if !r.Failed() && cfg.BucketPerStep && cfg.BatchSize == 0 {
		r.Fail("bucket_per_step", "needs batch_size: it aligns the buckets of the ranks' batches")
	}
	return cfg
}

func readImageConfig(r *confread.Reader, o *confread.Object) *ImageConfig {
	ic := &ImageConfig{
		DefaultImageSize:  DefaultImageSize,
		DownsamplingRatio: DefaultDownsamplingRatio,
		MinAspectRatio:    DefaultMinAspectRatio,
		MaxAspectRatio:    DefaultMaxAspectRatio,
		MaxPixels:         DefaultMaxPixels,
		ImageToRGB8:       true,
		EncodeFormat:      DefaultEncodeFormat,
		JPEGQuality:       DefaultJPEGQuality,
		AlphaBackground:   AlphaBackgrounds["white"],
	}
	r.Boolean(o, "crop_and_resize", &ic.CropAndResize)
	r.Integer(o, "default_image_size", &ic.DefaultImageSize, 1)
	r.Integer(o, "downsampling_ratio", &ic.DownsamplingRatio, 1)
	r.Float(o, "min_aspect_ratio", &ic.MinAspectRatio)
	r.Float(o, "max_aspect_ratio", &ic.MaxAspectRatio)
	r.Boolean(o, "pre_encode_images", &ic.PreEncodeImages)
	maxPixels := int(ic.MaxPixels)
	r.Integer(o, "max_pixels", &maxPixels, 1)
	ic.MaxPixels = int64(maxPixels)
	readOutputKeys(r, o, ic)
	r.Finish(o)
	if r.Failed() {
		return ic
	}
	switch {
	case ic.MinAspectRatio <= 0:
		r.Fail(o.Path()+".min_aspect_ratio", fmt.Sprintf("must be > 0, got %g", ic.MinAspectRatio))
	case ic.MinAspectRatio < 1/MaxAspectRatio:
		r.Fail(o.Path()+".min_aspect_ratio", fmt.Sprintf("must be >= 1/%g, got %g", MaxAspectRatio, ic.MinAspectRatio))
	case ic.MaxAspectRatio <= 0:
		r.Fail(o.Path()+".max_aspect_ratio", fmt.Sprintf("must be > 0, got %g", ic.MaxAspectRatio))
	case ic.MaxAspectRatio > MaxAspectRatio:
		r.Fail(o.Path()+".max_aspect_ratio", fmt.Sprintf("must be <= %g, got %g", MaxAspectRatio, ic.MaxAspectRatio))
	case ic.MinAspectRatio > ic.MaxAspectRatio:
		r.Fail(o.Path()+".min_aspect_ratio", fmt.Sprintf("must be <= max_aspect_ratio (%g), got %g", ic.MaxAspectRatio, ic.MinAspectRatio))
	case ic.DefaultImageSize > MaxImageSize:
		r.Fail(o.Path()+".default_image_size", fmt.Sprintf("must be <= %d, got %d", MaxImageSize, ic.DefaultImageSize))
	case ic.DefaultImageSize%ic.DownsamplingRatio != 0:
		r.Fail(o.Path()+".default_image_size", fmt.Sprintf("must be a multiple of downsampling_ratio (%d), got %d", ic.DownsamplingRatio, ic.DefaultImageSize))
	}
	if !r.Failed() && ic.CropAndResize {
		ic.Buckets = bucket.Buckets(ic.DefaultImageSize, ic.DownsamplingRatio, ic.MinAspectRatio, ic.MaxAspectRatio)
		if len(ic.Buckets) == 0 {
			r.Fail(o.Path()+".min_aspect_ratio", fmt.Sprintf("no aspect-ratio bucket lies between %g and %g at this size", ic.MinAspectRatio, ic.MaxAspectRatio))
		}
		for _, b := range ic.Buckets {
			if b.Width > MaxBucketSide || b.Height > MaxBucketSide {
				r.Fail(o.Path()+".default_image_size", fmt.Sprintf("gives a %dx%d bucket with these aspect ratios; sides are limited to %d", b.Width, b.Height, MaxBucketSide))
				break
			}
		}
	}
	return ic
}

// ParseImageConfig validates an image_config object on its own (used to compute buckets for callers).
func ParseImageConfig(data []byte) (*ImageConfig, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, &confread.Error{Key: "image_config", Msg: "invalid JSON: " + err.Error()}
	}
	r := &confread.Reader{}
	ic := readImageConfig(r, confread.NewObject("image_config", m))
	if err := r.Err(); err != nil {
		return nil, err
	}
	return ic, nil
}

// readOutputKeys reads image_to_rgb8, encode_format, jpeg_quality, alpha_background and alpha_mask.
func readOutputKeys(r *confread.Reader, o *confread.Object, ic *ImageConfig) {
	r.Boolean(o, "image_to_rgb8", &ic.ImageToRGB8)
	r.Str(o, "encode_format", &ic.EncodeFormat, false)
	if !r.Failed() {
		ic.EncodeFormat = strings.ToLower(ic.EncodeFormat)
		if ic.EncodeFormat == "jpg" {
			ic.EncodeFormat = "jpeg"
		}
		if !slices.Contains(EncodeFormats, ic.EncodeFormat) {
			r.Fail(o.Key("encode_format"), fmt.Sprintf("must be one of %s, got %q", quoted(EncodeFormats), ic.EncodeFormat))
		}
	}
	r.IntegerIn(o, "jpeg_quality", &ic.JPEGQuality, 0, 100)
	r.Str(o, "alpha_mask", &ic.AlphaMask, false)
	v, given := r.Value(o, "alpha_background")
	if given {
		if s, isStr := v.(string); isStr && strings.EqualFold(s, "keep") {
			ic.KeepAlpha = true
		} else {
			ic.AlphaBackground = readBackground(r, o.Key("alpha_background"), v)
		}
	}
	switch {
	case r.Failed():
	case ic.AlphaMask != "" && ic.KeepAlpha:
		r.Fail(o.Key("alpha_mask"), `cannot be used with alpha_background "keep": the mask carries the alpha that flattening takes out of the image`)
	case !ic.ImageToRGB8 && !given && ic.AlphaMask == "":
		// Native modes deliver the image as decoded, its alpha included, unless a background
		// is asked for.
		ic.KeepAlpha = true
	}
}

// readBackground reads an alpha_background: a name of AlphaBackgrounds or an [r, g, b] triple.
func readBackground(r *confread.Reader, key string, v any) [3]uint8 {
	var names []string
	for n := range AlphaBackgrounds {
		if n != "grey" {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	switch v := v.(type) {
	case string:
		if bg, ok := AlphaBackgrounds[strings.ToLower(v)]; ok {
			return bg
		}
		r.Fail(key, fmt.Sprintf(`must be one of %s, "keep" or an [r, g, b] triple, got %q`, quoted(names), v))
	case []any:
		var bg [3]uint8
		if len(v) != 3 {
			r.Fail(key, fmt.Sprintf("an [r, g, b] triple needs 3 values, got %d", len(v)))
			return bg
		}
		for i, c := range v {
			n, ok := c.(json.Number)
			x, err := n.Int64()
			if !ok || err != nil || x < 0 || x > 255 {
				r.Fail(fmt.Sprintf("%s[%d]", key, i), fmt.Sprintf("must be an integer from 0 to 255, got %v", c))
				return bg
			}
			bg[i] = uint8(x)
		}
		return bg
	default:
		r.Fail(key, fmt.Sprintf(`must be one of %s, "keep" or an [r, g, b] triple, got %s`, quoted(names), confread.JSONType(v)))
	}
	return AlphaBackgrounds["white"]
}

func quoted(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// settleSeed gives a shuffling source without a seed one: the resume state's, or a fresh random
// one (each client its own order, as in the Rust loader; Stats and State report it, so the run can
// be reproduced and resumed). A resume state taken with another seed than the config's is refused.
func settleSeed(r *confread.Reader, cfg *Config) {
	sd, ok := cfg.Source.(source.Seeded)
	if !ok {
		return
	}
	if sd.NeedsSeed() {
		seed := rand.Int64()
		if cfg.Resume != nil && cfg.Resume.Seed != nil {
			seed = *cfg.Resume.Seed
		}
		cfg.Source = sd.WithSeed(seed)
		return
	}
	if seed, shuffles := sd.ShuffleSeed(); shuffles && cfg.Resume != nil && cfg.Resume.Seed != nil && *cfg.Resume.Seed != seed {
		r.Fail("resume_state.seed", fmt.Sprintf("the state was taken with seed %d, but source_config.seed is %d", *cfg.Resume.Seed, seed))
	}
}

// Seed is the shuffle seed in use (drawn when the config gave none); false when the source does not shuffle.
func (c *Config) Seed() (int64, bool) {
	if sd, ok := c.Source.(source.Seeded); ok {
		return sd.ShuffleSeed()
	}
	return 0, false
}
