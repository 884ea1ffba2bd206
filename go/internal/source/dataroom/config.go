package dataroom

import (
	"fmt"
	"strings"

	"github.com/datago-dev/datago/internal/cenv"
	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/source/httpretry"
)

// Environment variables that give the dataroom API's URL and key when source_config does not.
const (
	EnvAPIURL = "DATAROOM_API_URL"
	EnvAPIKey = "DATAROOM_API_KEY"
)

// Kind is "source_type": "db" (the dataroom HTTP API).
var Kind = source.Kind{Names: []string{"db", "DB"}, Parse: parse}

// parse reads source_config. The keys are those of the original datago; lists may be JSON arrays
// or comma-separated strings, and -1 leaves an integer filter unset.
func parse(r *confread.Reader, sc *confread.Object) source.Config {
	dc := Config{
		PageSize:       defaultPageSize,
		WorldSize:      1,
		RequireImages:  true,
		MinShortEdge:   unset,
		MaxShortEdge:   unset,
		MinPixelCount:  unset,
		MaxPixelCount:  unset,
		DuplicateState: unset,
		Timeout:        defaultTimeout,
		MaxRetries:     defaultMaxRetries,
		Backoff:        defaultBackoff,
	}
	r.Str(sc, "api_url", &dc.APIURL, false)
	r.Str(sc, "api_key", &dc.APIKey, false)
	r.IntegerIn(sc, "page_size", &dc.PageSize, 1, maxPageSize)
	r.RankAndWorld(sc, &dc.Rank, &dc.WorldSize)
	for _, l := range []struct {
		key string
		dst *[]string
	}{
		{"sources", &dc.Sources}, {"sources__ne", &dc.SourcesNe},
		{"tags", &dc.Tags}, {"tags__ne", &dc.TagsNe},
		{"has_attributes", &dc.HasAttributes}, {"lacks_attributes", &dc.LacksAttributes},
		{"has_masks", &dc.HasMasks}, {"lacks_masks", &dc.LacksMasks},
		{"has_latents", &dc.HasLatents}, {"lacks_latents", &dc.LacksLatents},
		{"return_latents", &dc.ReturnLatents},
	} {
		r.CommaList(sc, l.key, l.dst)
	}
	// The Rust loader's spellings of the two exclusion filters.
	for alias, key := range map[string]string{"sources_ne": "sources__ne", "tags_ne": "tags__ne"} {
		r.Alias(sc, alias, key)
	}
	r.CommaList(sc, "sources_ne", &dc.SourcesNe)
	r.CommaList(sc, "tags_ne", &dc.TagsNe)
	// The Rust loader's tag filters (the API's tags__all, tags__ne_all, tags__empty), and its
	// attribute filters, "name[__cmp]:value" each (the API's attributes parameter).
	r.CommaList(sc, "tags_all", &dc.TagsAll)
	r.CommaList(sc, "tags_ne_all", &dc.TagsNeAll)
	if _, ok := sc.Map()["tags_empty"]; ok {
		empty := false
		r.Boolean(sc, "tags_empty", &empty)
		dc.TagsEmpty = &empty
	}
	r.CommaList(sc, "attributes", &dc.Attributes)
	for i, a := range dc.Attributes {
		if name, _, ok := strings.Cut(a, ":"); (!ok || name == "") && !r.Failed() {
			r.Fail(fmt.Sprintf("%s[%d]", sc.Key("attributes"), i), fmt.Sprintf("must be name:value or name__cmp:value, got %q", a))
		}
	}
	r.Boolean(sc, "require_images", &dc.RequireImages)
	r.Boolean(sc, "require_embeddings", &dc.RequireEmbeddings)
	r.Boolean(sc, "return_duplicate_state", &dc.ReturnDuplicateState)
	r.Boolean(sc, "random_sampling", &dc.RandomSampling)
	r.Integer(sc, "min_short_edge", &dc.MinShortEdge, unset)
	r.Integer(sc, "max_short_edge", &dc.MaxShortEdge, unset)
	r.Integer(sc, "min_pixel_count", &dc.MinPixelCount, unset)
	r.Integer(sc, "max_pixel_count", &dc.MaxPixelCount, unset)
	r.IntegerIn(sc, "duplicate_state", &dc.DuplicateState, unset, 2)
	httpretry.ReadPolicy(r, sc, &dc.Timeout, &dc.MaxRetries)
	if r.Failed() {
		return dc
	}
	urlFrom := ""
	if dc.APIURL == "" {
		dc.APIURL, urlFrom = cenv.Getenv(EnvAPIURL), " (from "+EnvAPIURL+")"
	}
	if dc.APIKey == "" {
		dc.APIKey = cenv.Getenv(EnvAPIKey)
	}
	switch {
	case dc.APIURL == "":
		r.Fail(sc.Key("api_url"), "is required: set it, or the "+EnvAPIURL+" environment variable (e.g. http://host:8000/api/)")
	case dc.APIKey == "":
		r.Fail(sc.Key("api_key"), "is required: set it, or the "+EnvAPIKey+" environment variable")
	case dc.WorldSize > maxPartitions:
		r.Fail(sc.Key("world_size"), fmt.Sprintf("must be <= %d (the server splits its index into at most %d partitions), got %d",
			maxPartitions, maxPartitions, dc.WorldSize))
	case dc.MinShortEdge != unset && dc.MaxShortEdge != unset && dc.MinShortEdge > dc.MaxShortEdge:
		r.Fail(sc.Key("min_short_edge"), fmt.Sprintf("must be <= max_short_edge (%d), got %d", dc.MaxShortEdge, dc.MinShortEdge))
	case dc.MinPixelCount != unset && dc.MaxPixelCount != unset && dc.MinPixelCount > dc.MaxPixelCount:
		r.Fail(sc.Key("min_pixel_count"), fmt.Sprintf("must be <= max_pixel_count (%d), got %d", dc.MaxPixelCount, dc.MinPixelCount))
	}
	if !r.Failed() {
		if _, err := parseAPIURL(dc.APIURL); err != nil {
			r.Fail(sc.Key("api_url"), httpretry.Redact(err.Error(), dc.APIKey)+urlFrom)
		}
	}
	return dc
}
