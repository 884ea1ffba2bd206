package dataroom

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/confread"
)

const dbTestKey = "f00dfeedf00dfeedf00dfeedf00dfeedf00dk3y9"

// parseConfig reads {sc} as source_config, as the configuration does.
func parseConfig(t *testing.T, sc string) (Config, error) {
	t.Helper()
	return confread.ReadSection[Config]([]byte("{"+sc+"}"), "source_config", parse)
}

func TestDBConfigDefaultsAndEnvironment(t *testing.T) {
	t.Setenv(EnvAPIURL, "http://127.0.0.1:9/api")
	t.Setenv(EnvAPIKey, dbTestKey)
	dc, err := parseConfig(t, ``)
	if err != nil {
		t.Fatal(err)
	}
	if dc.APIURL != "http://127.0.0.1:9/api" || dc.APIKey != dbTestKey || dc.PageSize != 512 ||
		!dc.RequireImages || dc.MinShortEdge != unset || dc.DuplicateState != unset ||
		dc.Timeout != 30*time.Second || dc.MaxRetries != 5 || dc.WorldSize != 1 || dc.Backoff != defaultBackoff {
		t.Fatalf("%v", dc)
	}
	// Explicit values win over the environment; lists come as arrays or comma-separated strings.
	dc, err = parseConfig(t, `"api_url": "https://h/api/", "api_key": "k", "tags": "a, b,,a", "sources": ["x", "y"],
		"duplicate_state": 0, "min_short_edge": 256, "timeout_s": 2.5, "max_retries": 0, "rank": 1, "world_size": 3`)
	if err != nil {
		t.Fatal(err)
	}
	if dc.APIURL != "https://h/api/" || dc.APIKey != "k" || strings.Join(dc.Tags, "|") != "a|b" || strings.Join(dc.Sources, "|") != "x|y" ||
		dc.DuplicateState != 0 || dc.MinShortEdge != 256 || dc.Timeout != 2500*time.Millisecond || dc.MaxRetries != 0 {
		t.Fatalf("%v", dc)
	}
}

func TestDBConfigErrors(t *testing.T) {
	t.Setenv(EnvAPIURL, "")
	t.Setenv(EnvAPIKey, "")
	key := `"api_key": "` + dbTestKey + `"`
	for sc, want := range map[string]string{
		`"api_key": "x"`:                                                             "source_config.api_url: is required",
		`"api_url": "http://h/api/"`:                                                 "source_config.api_key: is required",
		`"api_url": "ftp://h/", ` + key:                                              "source_config.api_url: must be an http:// or https:// URL",
		`"api_url": "http://h/", "page_size": 2001, ` + key:                          "source_config.page_size: must be <= 2000",
		`"api_url": "http://h/", "world_size": 49, "rank": 0, ` + key:                "source_config.world_size: must be <= 48",
		`"api_url": "http://h/", "duplicate_state": 3, ` + key:                       "source_config.duplicate_state: must be <= 2",
		`"api_url": "http://h/", "min_short_edge": -2, ` + key:                       "source_config.min_short_edge: must be >= -1",
		`"api_url": "http://h/", "min_pixel_count": 9, "max_pixel_count": 4, ` + key: "source_config.min_pixel_count: must be <= max_pixel_count",
		`"api_url": "http://h/", "tags": [1], ` + key:                                "source_config.tags[0]: must be a string",
		`"api_url": "http://h/", "tags": ["a,b"], ` + key:                            "source_config.tags[0]: must not contain a comma",
		`"api_url": "http://h/", "tags": 3, ` + key:                                  "source_config.tags: must be a list of strings or a comma-separated string",
		`"api_url": "http://h/", "timeout_s": 0, ` + key:                             "source_config.timeout_s: must be > 0",
		`"api_url": "http://h/", "max_retries": 101, ` + key:                         "source_config.max_retries: must be <= 100",
		`"api_url": "http://h/", "tag": "a", ` + key:                                 `source_config.tag: unknown key (did you mean "tags"?)`,
		`"api_url": "http://h/", "api_key": 12`:                                      "source_config.api_key: must be a string",
	} {
		_, err := parseConfig(t, sc)
		var ce *confread.Error
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", sc, err, want)
		}
		if err != nil && strings.Contains(err.Error(), dbTestKey[:12]) {
			t.Errorf("the key leaks: %v", err)
		}
	}
}
