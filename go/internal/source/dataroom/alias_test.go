package dataroom

import (
	"errors"
	"reflect"
	"strings"
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

// The Rust loader's tags_all, tags_ne_all, tags_empty and attributes reach the query as the API's
// tags__all, tags__ne_all, tags__empty and attributes.
func TestRustTagAndAttributeFilters(t *testing.T) {
	t.Setenv(EnvAPIURL, "http://127.0.0.1:9/api")
	t.Setenv(EnvAPIKey, dbTestKey)
	dc, err := parseConfig(t, `"tags_all": "a,b", "tags_ne_all": ["c"], "tags_empty": false,
		"attributes": ["aesthetic_score__gte:0.5", "caption__match:cat"]`)
	if err != nil {
		t.Fatal(err)
	}
	got := encodeQuery(queryOf(dc), "")
	for _, want := range []string{"tags__all=a,b", "tags__ne_all=c", "tags__empty=false", "attributes=aesthetic_score__gte%3A0.5,caption__match%3Acat"} {
		if !strings.Contains(got, want) {
			t.Fatalf("query %s lacks %s", got, want)
		}
	}
	if dc, err = parseConfig(t, ``); err != nil || dc.TagsEmpty != nil || strings.Contains(encodeQuery(queryOf(dc), ""), "tags__") {
		t.Fatalf("no filter: %v %+v", err, dc)
	}
	for sc, key := range map[string]string{
		`"attributes": ["nocolon"]`: "source_config.attributes[0]",
		`"tags_empty": "yes"`:       "source_config.tags_empty",
		`"tags_all": 3`:             "source_config.tags_all",
	} {
		_, err := parseConfig(t, sc)
		var ce *confread.Error
		if !errors.As(err, &ce) || ce.Key != key {
			t.Fatalf("%s: %v", sc, err)
		}
	}
}
