package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/datago-dev/datago/internal/confread"
)

// FuzzParseConfig: any input is either a valid configuration or a ConfigError that names a key;
// never a panic, which would take the host Python process down.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		`{"source_type": "filesystem", "source_config": {"root_path": "/"}}`,
		`{"source_type": "file", "source_config": {"root_path": "/", "rank": 1, "world_size": 2}, "limit": 3}`,
		`{"source_type": "filesystem", "source_config": {"root_path": "/"}, "image_config": {"crop_and_resize": true, "default_image_size": 512, "downsampling_ratio": 16, "min_aspect_ratio": 0.5, "max_aspect_ratio": 2.0}}`,
		`{"source_type": "db", "source_config": {"api_url": "http://127.0.0.1:1/api/", "api_key": "k", "tags": ["a"]}}`,
		`{"source_type": "webdataset", "source_config": {"url": "/nope/s-{000..009}.tar"}}`,
		`{"concurency": 1}`, `[]`, `{`, `{"source_type": 1e400}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err == nil {
			if cfg.SourceType == "" || cfg.Concurrency < 1 || cfg.PrefetchBufferSize < 1 || cfg.SamplesBufferSize < 1 {
				t.Fatalf("accepted an incomplete config: %+v", cfg)
			}
			return
		}
		var ce *confread.Error
		if !errors.As(err, &ce) || ce.Key == "" || !strings.HasPrefix(err.Error(), ce.Key+": ") {
			t.Fatalf("error without a key path: %v", err)
		}
	})
}
