package datago

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/datago-dev/datago/internal/cenv"
	"github.com/datago-dev/datago/internal/source"
)

// Environment variables that give the dataroom API's URL and key when source_config does not.
const (
	EnvDataroomAPIURL = "DATAROOM_API_URL"
	EnvDataroomAPIKey = "DATAROOM_API_KEY"
)

func init() {
	registerSource(&sourceKind{
		names: []string{"db", "DB"},
		parse: parseDataroom,
		open: func(cfg *Config) (source.Source, error) {
			dc := cfg.Source.(source.DataroomConfig)
			dc.Conns = cfg.Concurrency * FetchersPerWorker
			dc.MaxBodyBytes = cfg.MaxFileBytes
			return source.NewDataroom(dc)
		},
	})
}

// parseDataroom reads source_config for "source_type": "db" (the dataroom HTTP API). The keys are
// those of the original datago; lists may be JSON arrays or comma-separated strings, and -1 leaves an
// integer filter unset.
func parseDataroom(r *reader, sc *object) any {
	dc := source.DataroomConfig{
		PageSize:       source.DataroomDefaultPageSize,
		WorldSize:      1,
		RequireImages:  true,
		MinShortEdge:   source.Unset,
		MaxShortEdge:   source.Unset,
		MinPixelCount:  source.Unset,
		MaxPixelCount:  source.Unset,
		DuplicateState: source.Unset,
		Timeout:        source.DataroomDefaultTimeout,
		MaxRetries:     source.DataroomDefaultMaxRetries,
	}
	r.str(sc, "api_url", &dc.APIURL, false)
	r.str(sc, "api_key", &dc.APIKey, false)
	r.integerIn(sc, "page_size", &dc.PageSize, 1, source.DataroomMaxPageSize)
	r.rankAndWorld(sc, &dc.Rank, &dc.WorldSize)
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
		r.dbStringList(sc, l.key, l.dst)
	}
	r.boolean(sc, "require_images", &dc.RequireImages)
	r.boolean(sc, "require_embeddings", &dc.RequireEmbeddings)
	r.boolean(sc, "return_duplicate_state", &dc.ReturnDuplicateState)
	r.boolean(sc, "random_sampling", &dc.RandomSampling)
	r.integer(sc, "min_short_edge", &dc.MinShortEdge, source.Unset)
	r.integer(sc, "max_short_edge", &dc.MaxShortEdge, source.Unset)
	r.integer(sc, "min_pixel_count", &dc.MinPixelCount, source.Unset)
	r.integer(sc, "max_pixel_count", &dc.MaxPixelCount, source.Unset)
	r.integerIn(sc, "duplicate_state", &dc.DuplicateState, source.Unset, 2)
	timeout := dc.Timeout.Seconds()
	r.float(sc, "timeout_s", &timeout)
	r.integerIn(sc, "max_retries", &dc.MaxRetries, 0, 100)
	if r.err != nil {
		return dc
	}
	urlFrom := ""
	if dc.APIURL == "" {
		dc.APIURL, urlFrom = cenv.Getenv(EnvDataroomAPIURL), " (from "+EnvDataroomAPIURL+")"
	}
	if dc.APIKey == "" {
		dc.APIKey = cenv.Getenv(EnvDataroomAPIKey)
	}
	switch {
	case dc.APIURL == "":
		r.fail(sc.key("api_url"), "is required: set it, or the "+EnvDataroomAPIURL+" environment variable (e.g. http://host:8000/api/)")
	case dc.APIKey == "":
		r.fail(sc.key("api_key"), "is required: set it, or the "+EnvDataroomAPIKey+" environment variable")
	case timeout <= 0 || timeout > 24*3600 || math.IsNaN(timeout):
		r.fail(sc.key("timeout_s"), fmt.Sprintf("must be > 0 and <= 86400, got %g", timeout))
	case dc.WorldSize > source.DataroomMaxPartitions:
		r.fail(sc.key("world_size"), fmt.Sprintf("must be <= %d (the server splits its index into at most %d partitions), got %d",
			source.DataroomMaxPartitions, source.DataroomMaxPartitions, dc.WorldSize))
	case dc.MinShortEdge != source.Unset && dc.MaxShortEdge != source.Unset && dc.MinShortEdge > dc.MaxShortEdge:
		r.fail(sc.key("min_short_edge"), fmt.Sprintf("must be <= max_short_edge (%d), got %d", dc.MaxShortEdge, dc.MinShortEdge))
	case dc.MinPixelCount != source.Unset && dc.MaxPixelCount != source.Unset && dc.MinPixelCount > dc.MaxPixelCount:
		r.fail(sc.key("min_pixel_count"), fmt.Sprintf("must be <= max_pixel_count (%d), got %d", dc.MaxPixelCount, dc.MinPixelCount))
	}
	if r.err == nil {
		if _, err := source.ParseDataroomURL(dc.APIURL); err != nil {
			msg := err.Error()
			if len(dc.APIKey) >= 4 {
				msg = strings.ReplaceAll(msg, dc.APIKey, source.RedactKey(dc.APIKey))
			}
			r.fail(sc.key("api_url"), msg+urlFrom)
		}
	}
	dc.Timeout = time.Duration(timeout * float64(time.Second))
	return dc
}
