package dataroom

import (
	"errors"
	"reflect"
	"testing"

	"github.com/datago-dev/datago/internal/confread"
)

// The Rust loader's spellings sources_ne and tags_ne set the same filters as sources__ne and
// tags__ne; both spellings at once is a mistake.
func TestRustFilterSpellings(t *testing.T) {
	t.Setenv(EnvAPIURL, "http://127.0.0.1:9/api")
	t.Setenv(EnvAPIKey, dbTestKey)
	dc, err := parseConfig(t, `"sources_ne": "a,b", "tags_ne": ["x"]`)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dc.SourcesNe, []string{"a", "b"}) || !reflect.DeepEqual(dc.TagsNe, []string{"x"}) {
		t.Fatalf("got %v / %v", dc.SourcesNe, dc.TagsNe)
	}
	same, err := parseConfig(t, `"sources__ne": "a,b", "tags__ne": ["x"]`)
	if err != nil || !reflect.DeepEqual(same.SourcesNe, dc.SourcesNe) || !reflect.DeepEqual(same.TagsNe, dc.TagsNe) {
		t.Fatalf("original spellings: %v, %+v", err, same)
	}
	_, err = parseConfig(t, `"tags_ne": "x", "tags__ne": "y"`)
	var ce *confread.Error
	if !errors.As(err, &ce) || ce.Key != "source_config.tags_ne" {
		t.Fatalf("both spellings: %v", err)
	}
}

// The latent types downloaded are the union of return_latents, has_latents and has_masks.
func TestReturnLatentsUnion(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want []string
	}{
		{Config{}, nil},
		{Config{HasMasks: []string{"m"}, HasLatents: []string{"l"}}, []string{"l", "m"}},
		{Config{ReturnLatents: []string{"v"}, HasMasks: []string{"m"}}, []string{"v", "m"}},
		{Config{ReturnLatents: []string{"m", "v"}, HasMasks: []string{"m"}, HasLatents: []string{"v"}}, []string{"m", "v"}},
	} {
		if got := tc.cfg.returnLatents(); !reflect.DeepEqual(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Fatalf("%+v: got %v, want %v", tc.cfg, got, tc.want)
		}
	}
}
