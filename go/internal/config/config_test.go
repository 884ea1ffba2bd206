package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/source/dataroom"
	"github.com/datago-dev/datago/internal/source/filesystem"
	"github.com/datago-dev/datago/internal/source/webdataset"
)

func TestParseConfigDefaults(t *testing.T) {
	root := t.TempDir()
	cfg, err := Parse([]byte(fmt.Sprintf(`{"source_type": "file", "source_config": {"root_path": %q}}`, root)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SourceType != "filesystem" || cfg.Image != nil || cfg.Limit != 0 ||
		cfg.PrefetchBufferSize != DefaultPrefetchBufferSize || cfg.SamplesBufferSize != DefaultSamplesBufferSize ||
		cfg.Concurrency != runtime.NumCPU() || cfg.Source.(filesystem.Config).PageSize != filesystem.DefaultPageSize || cfg.Source.(filesystem.Config).WorldSize != 1 {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

func TestParseConfigOriginalExample(t *testing.T) {
	root := t.TempDir()
	cfg, err := Parse([]byte(fmt.Sprintf(`{
	  "source_type": "filesystem",
	  "source_config": {"root_path": %q, "page_size": 512, "rank": 1, "world_size": 2},
	  "image_config": {"crop_and_resize": true, "default_image_size": 512, "downsampling_ratio": 16,
	                   "min_aspect_ratio": 0.5, "max_aspect_ratio": 2.0, "pre_encode_images": false},
	  "prefetch_buffer_size": 64, "samples_buffer_size": 128, "concurrency": 8, "limit": 10}`, root)))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.(filesystem.Config).Rank != 1 || cfg.Concurrency != 8 || cfg.Limit != 10 || !cfg.Image.CropAndResize ||
		len(cfg.Image.Buckets) == 0 || cfg.Image.MaxPixels != DefaultMaxPixels {
		t.Fatalf("unexpected config %+v / %+v", cfg, cfg.Image)
	}
}

func TestParseConfigErrorsNameTheKey(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "f.txt")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	sc := fmt.Sprintf(`"source_config": {"root_path": %q}`, root)
	cases := []struct{ json, key, contains string }{
		{`[]`, "config", "object"},
		{`{`, "config", "invalid JSON"},
		{`{"source_config": {"root_path": "/"}}`, "source_type", "required"},
		{`{"source_type": "ftp", ` + sc + `}`, "source_type", "unknown source type"},
		{`{"source_type": 3, ` + sc + `}`, "source_type", "string"},
		{`{"source_type": "filesystem"}`, "source_config", "required"},
		{`{"source_type": "filesystem", "source_config": {}}`, "source_config.root_path", "required"},
		{`{"source_type": "filesystem", "source_config": {"root_path": "/does/not/exist"}}`, "source_config.root_path", "no such file"},
		{fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q}}`, file), "source_config.root_path", "not a directory"},
		{fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q, "rank": 2, "world_size": 2}}`, root), "source_config.rank", "< world_size"},
		{fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q, "rank": -1}}`, root), "source_config.rank", ">= 0"},
		{fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q, "world_size": 0}}`, root), "source_config.world_size", ">= 1"},
		{fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q, "page_size": 1.5}}`, root), "source_config.page_size", "integer"},
		{fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q, "rnak": 1}}`, root), "source_config.rnak", `did you mean "rank"`},
		{`{"source_type": "filesystem", ` + sc + `, "concurency": 4}`, "concurency", `did you mean "concurrency"`},
		{`{"source_type": "filesystem", ` + sc + `, "concurrency": -1}`, "concurrency", ">= 0"},
		{`{"source_type": "filesystem", ` + sc + `, "prefetch_buffer_size": 0}`, "prefetch_buffer_size", ">= 1"},
		{`{"source_type": "filesystem", ` + sc + `, "samples_buffer_size": 0}`, "samples_buffer_size", ">= 1"},
		{`{"source_type": "filesystem", ` + sc + `, "limit": -5}`, "limit", ">= 0"},
		{`{"source_type": "filesystem", ` + sc + `, "prefetch_buffer_size": 1000000000000}`, "prefetch_buffer_size", "<= 65536"},
		{`{"source_type": "filesystem", ` + sc + `, "samples_buffer_size": 100000000000}`, "samples_buffer_size", "<= 65536"},
		{`{"source_type": "filesystem", ` + sc + `, "concurrency": 100000}`, "concurrency", "<= 1024"},
		{`{"source_type": "filesystem", ` + sc + `, "foo": 1}`, "foo", "valid keys: batch_size, bucket_per_step, concurrency, deterministic"},
		{`{"source_type": "filesystem", ` + sc + `, "equal_steps": "sometimes"}`, "equal_steps", `must be "off", "pad" or "drop"`},
		{`{"source_type": "filesystem", ` + sc + `, "equal_steps": true}`, "equal_steps", "string"},
		{`{"source_type": "filesystem", ` + sc + `, "bucket_per_step": true}`, "bucket_per_step", "needs batch_size"},
		{`{"source_type": "filesystem", ` + sc + `, "batch_size": 4, "image_config": {"crop_and_resize": true, "image_to_rgb8": false}}`, "batch_size", "image_to_rgb8 false"},
		{`{"source_type": "filesystem", ` + sc + `, "batch_size": 4, "image_config": {"crop_and_resize": true, "alpha_mask": "alpha"}}`, "batch_size", "alpha_mask"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"max_aspect_ratio": 1000000}}`, "image_config.max_aspect_ratio", "<= 64"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"min_aspect_ratio": 0.000001}}`, "image_config.min_aspect_ratio", ">= 1/64"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"default_image_size": 32768}}`, "image_config.default_image_size", "<= 16384"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"crop_and_resize": true, "default_image_size": 16384, "min_aspect_ratio": 0.02, "max_aspect_ratio": 50}}`, "image_config.default_image_size", "sides are limited"},
		{`{"source_type": "filesystem", ` + sc + `, "limit": "10"}`, "limit", "integer"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": []}`, "image_config", "object"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"crop_and_resize": 1}}`, "image_config.crop_and_resize", "boolean"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"default_image_size": -512}}`, "image_config.default_image_size", ">= 1"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"downsampling_ratio": 0}}`, "image_config.downsampling_ratio", ">= 1"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"default_image_size": 500}}`, "image_config.default_image_size", "multiple"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"min_aspect_ratio": 2.5}}`, "image_config.min_aspect_ratio", "<= max_aspect_ratio"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"min_aspect_ratio": -1}}`, "image_config.min_aspect_ratio", "> 0"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"crop_and_resize": true, "min_aspect_ratio": 1.3, "max_aspect_ratio": 1.3}}`, "image_config.min_aspect_ratio", "no aspect-ratio bucket"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"max_pixels": 0}}`, "image_config.max_pixels", ">= 1"},
		{`{"source_type": "filesystem", ` + sc + `, "image_config": {"pre_encode_image": true}}`, "image_config.pre_encode_image", `did you mean "pre_encode_images"`},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.json))
		var ce *confread.Error
		if !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want a ConfigError", c.json, err)
			continue
		}
		if ce.Key != c.key || !strings.Contains(ce.Error(), c.contains) || !strings.HasPrefix(ce.Error(), c.key+": ") {
			t.Errorf("%s: got %q (key %q), want key %q and %q", c.json, ce.Error(), ce.Key, c.key, c.contains)
		}
	}
}

// TestSourceTypeSpellings: every accepted spelling of source_type gives its canonical name and the
// kind's own config type, with no type assertion left to fail later.
func TestSourceTypeSpellings(t *testing.T) {
	root := t.TempDir()
	shard := filepath.Join(root, "s.tar")
	if err := os.WriteFile(shard, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(dataroom.EnvAPIURL, "http://127.0.0.1:9/api/")
	t.Setenv(dataroom.EnvAPIKey, "k")
	for _, c := range []struct{ name, sc, canonical string }{
		{"file", fmt.Sprintf(`{"root_path": %q}`, root), "filesystem"},
		{"FileSystem", fmt.Sprintf(`{"root_path": %q}`, root), "filesystem"},
		{"DB", `{}`, "db"},
		{"db", `{}`, "db"},
		{"WDS", fmt.Sprintf(`{"url": %q}`, shard), "webdataset"},
	} {
		cfg, err := Parse([]byte(fmt.Sprintf(`{"source_type": %q, "source_config": %s}`, c.name, c.sc)))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var ok bool
		switch c.canonical {
		case "filesystem":
			_, ok = cfg.Source.(filesystem.Config)
		case "db":
			_, ok = cfg.Source.(dataroom.Config)
		case "webdataset":
			_, ok = cfg.Source.(webdataset.Config)
		}
		if cfg.SourceType != c.canonical || !ok {
			t.Errorf("%s: source type %q, config %T", c.name, cfg.SourceType, cfg.Source)
		}
	}
}

func TestOutputKeys(t *testing.T) {
	root := t.TempDir()
	parse := func(ic string) (*Config, error) {
		return Parse([]byte(fmt.Sprintf(`{"source_type": "file", "source_config": {"root_path": %q}, "image_config": {%s}}`, root, ic)))
	}
	cfg, err := parse(``)
	if err != nil {
		t.Fatal(err)
	}
	if ic := cfg.Image; !ic.ImageToRGB8 || ic.EncodeFormat != "jpeg" || ic.JPEGQuality != 95 || ic.AlphaBackground != [3]uint8{255, 255, 255} {
		t.Fatalf("defaults: %+v", ic)
	}
	for ic, want := range map[string]ImageConfig{
		`"encode_format": "PNG", "jpeg_quality": 0`:            {EncodeFormat: "png", JPEGQuality: 0, AlphaBackground: [3]uint8{255, 255, 255}},
		`"encode_format": "jpg", "jpeg_quality": 100`:          {EncodeFormat: "jpeg", JPEGQuality: 100, AlphaBackground: [3]uint8{255, 255, 255}},
		`"encode_format": "webp", "alpha_background": "gray"`:  {EncodeFormat: "webp", JPEGQuality: 95, AlphaBackground: [3]uint8{128, 128, 128}},
		`"alpha_background": [1, 2, 3], "image_to_rgb8": true`: {EncodeFormat: "jpeg", JPEGQuality: 95, AlphaBackground: [3]uint8{1, 2, 3}},
		`"alpha_background": "Black"`:                          {EncodeFormat: "jpeg", JPEGQuality: 95, AlphaBackground: [3]uint8{0, 0, 0}},
	} {
		cfg, err := parse(ic)
		if err != nil {
			t.Fatalf("%s: %v", ic, err)
		}
		got := cfg.Image
		if got.EncodeFormat != want.EncodeFormat || got.JPEGQuality != want.JPEGQuality || got.AlphaBackground != want.AlphaBackground {
			t.Fatalf("%s: got %+v", ic, got)
		}
	}
	if cfg, err := parse(`"alpha_background": "Keep"`); err != nil || !cfg.Image.KeepAlpha {
		t.Fatalf("keep: %v", err)
	}
	// Native modes keep the alpha unless a background or a mask is asked for.
	for ic, keep := range map[string]bool{
		`"image_to_rgb8": false`:                              true,
		`"image_to_rgb8": false, "alpha_background": "black"`: false,
		`"image_to_rgb8": false, "alpha_background": "keep"`:  true,
		`"image_to_rgb8": false, "alpha_mask": "alpha"`:       false,
		`"image_to_rgb8": true, "alpha_mask": "alpha"`:        false,
		`"image_to_rgb8": true`:                               false,
	} {
		cfg, err := parse(ic)
		if err != nil || cfg.Image.ImageToRGB8 == strings.Contains(ic, "false") || cfg.Image.KeepAlpha != keep {
			t.Fatalf("%s: %v, %+v", ic, err, cfg)
		}
	}
	if cfg, err := parse(`"alpha_mask": "a"`); err != nil || cfg.Image.AlphaMask != "a" {
		t.Fatalf("alpha_mask: %v", err)
	}
	for ic, key := range map[string]string{
		`"encode_format": "gif"`:                            "image_config.encode_format",
		`"encode_format": 3`:                                "image_config.encode_format",
		`"jpeg_quality": 101`:                               "image_config.jpeg_quality",
		`"jpeg_quality": -1`:                                "image_config.jpeg_quality",
		`"jpeg_quality": 9.5`:                               "image_config.jpeg_quality",
		`"alpha_background": "pink"`:                        "image_config.alpha_background",
		`"alpha_background": [1, 2]`:                        "image_config.alpha_background",
		`"alpha_background": [1, 2, 256]`:                   "image_config.alpha_background[2]",
		`"alpha_background": [1, "x", 3]`:                   "image_config.alpha_background[1]",
		`"alpha_background": 7`:                             "image_config.alpha_background",
		`"alpha_mask": 3`:                                   "image_config.alpha_mask",
		`"alpha_mask": "alpha", "alpha_background": "keep"`: "image_config.alpha_mask",
		`"image_to_rgb8": "yes"`:                            "image_config.image_to_rgb8",
		`"alpha_backgroun": "white"`:                        "image_config.alpha_backgroun",
	} {
		_, err := parse(ic)
		var ce *confread.Error
		if !errors.As(err, &ce) || ce.Key != key {
			t.Fatalf("%s: got %v, want an error on %s", ic, err, key)
		}
	}
}

// DATAGO_MAX_TASKS and DATAGO_MAX_RETRIES change the defaults of concurrency and max_retries; the
// keys still win, and a bad value is an error naming the variable.
func TestEnvDefaults(t *testing.T) {
	root := t.TempDir()
	fsCfg := fmt.Sprintf(`{"source_type": "file", "source_config": {"root_path": %q}%%s}`, root)
	wds := filepath.Join(root, "a.tar")
	if err := os.WriteFile(wds, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wdsCfg := fmt.Sprintf(`{"source_type": "webdataset", "source_config": {"url": %q%%s}}`, wds)

	t.Setenv(EnvMaxTasks, "3")
	t.Setenv("DATAGO_MAX_RETRIES", "7")
	cfg, err := Parse([]byte(fmt.Sprintf(fsCfg, "")))
	if err != nil || cfg.Concurrency != 3 {
		t.Fatalf("DATAGO_MAX_TASKS=3: %v, %+v", err, cfg)
	}
	if cfg, err = Parse([]byte(fmt.Sprintf(fsCfg, `, "concurrency": 5`))); err != nil || cfg.Concurrency != 5 {
		t.Fatalf("the key must win: %v", err)
	}
	if cfg, err = Parse([]byte(fmt.Sprintf(wdsCfg, ""))); err != nil || cfg.Source.(webdataset.Config).MaxRetries != 7 {
		t.Fatalf("DATAGO_MAX_RETRIES=7: %v, %+v", err, cfg)
	}
	if cfg, err = Parse([]byte(fmt.Sprintf(wdsCfg, `, "max_retries": 1`))); err != nil || cfg.Source.(webdataset.Config).MaxRetries != 1 {
		t.Fatalf("the key must win: %v", err)
	}
	t.Setenv(EnvMaxTasks, "0")
	if cfg, err = Parse([]byte(fmt.Sprintf(fsCfg, ""))); err != nil || cfg.Concurrency != 1 {
		t.Fatalf("DATAGO_MAX_TASKS=0 is serial: %v, %+v", err, cfg)
	}
	for name, v := range map[string]string{EnvMaxTasks: "many", "DATAGO_MAX_RETRIES": "-1"} {
		t.Setenv(name, v)
		_, err := Parse([]byte(fmt.Sprintf(wdsCfg, "")))
		var ce *confread.Error
		if !errors.As(err, &ce) || ce.Key != name {
			t.Fatalf("%s=%s: %v", name, v, err)
		}
		t.Setenv(name, "1")
	}
}

// random_sampling / shuffle without a seed draws a fresh one per client; a resume state's seed
// is taken instead; a config seed that contradicts the state's is refused.
func TestFreshSeedPerClient(t *testing.T) {
	root := t.TempDir()
	shard := filepath.Join(root, "s.tar")
	if err := os.WriteFile(shard, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fsCfg := func(sc string) string {
		return fmt.Sprintf(`{"source_type": "file", "source_config": {"root_path": %q%s}}`, root, sc)
	}
	wdsCfg := func(sc string) string {
		return fmt.Sprintf(`{"source_type": "webdataset", "source_config": {"url": %q%s}}`, shard, sc)
	}
	for _, mk := range []func(string) string{fsCfg, wdsCfg} {
		on := `, "random_sampling": true`
		seeds := map[int64]bool{}
		for i := 0; i < 4; i++ {
			cfg, err := Parse([]byte(mk(on)))
			if err != nil {
				t.Fatal(err)
			}
			seed, ok := cfg.Seed()
			if !ok {
				t.Fatal("no seed reported")
			}
			seeds[seed] = true
		}
		if len(seeds) != 4 {
			t.Fatalf("4 clients without a seed drew %d distinct seeds", len(seeds))
		}
		cfg, err := Parse([]byte(mk(on + `, "seed": 42`)))
		if seed, _ := cfg.Seed(); err != nil || seed != 42 {
			t.Fatalf("explicit seed: %v %d", err, seed)
		}
		if cfg, err = Parse([]byte(mk(``))); err != nil {
			t.Fatal(err)
		} else if _, ok := cfg.Seed(); ok {
			t.Fatal("a seed reported without random sampling")
		}
		state := `"resume_state": {"version": 1, "epoch": 0, "done": [], "seed": 7}`
		withState := strings.Replace(mk(on), `}}`, `}, `+state+`}`, 1)
		if cfg, err = Parse([]byte(withState)); err != nil {
			t.Fatal(err)
		} else if seed, _ := cfg.Seed(); seed != 7 {
			t.Fatalf("the state's seed is not used: %d", seed)
		}
		bad := strings.Replace(mk(on+`, "seed": 8`), `}}`, `}, `+state+`}`, 1)
		var ce *confread.Error
		if _, err = Parse([]byte(bad)); !errors.As(err, &ce) || ce.Key != "resume_state.seed" {
			t.Fatalf("contradicting seeds: %v", err)
		}
	}
}
