package webdataset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/datago-dev/datago/internal/confread"
)

// random_sampling is the Rust loader's name for shuffle.
func TestRandomSamplingIsShuffle(t *testing.T) {
	shard := filepath.Join(t.TempDir(), "s.tar")
	if err := os.WriteFile(shard, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for sc, want := range map[string]bool{`"random_sampling": true`: true, `"random_sampling": false`: false, `"shuffle": true`: true, ``: false} {
		text := fmt.Sprintf(`"url": %q`, shard)
		if sc != "" {
			text += ", " + sc
		}
		wc, err := parseConfig(t, text)
		if err != nil || wc.Shuffle != want {
			t.Fatalf("%s: %v, shuffle %v", sc, err, wc.Shuffle)
		}
	}
	_, err := parseConfig(t, fmt.Sprintf(`"url": %q, "shuffle": true, "random_sampling": true`, shard))
	var ce *confread.Error
	if !errors.As(err, &ce) || ce.Key != "source_config.random_sampling" {
		t.Fatalf("both names: %v", err)
	}
}
