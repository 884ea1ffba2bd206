package datago

import (
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/source"
)

const dbTestKey = "f00dfeedf00dfeedf00dfeedf00dfeedf00dk3y9"

func dbConfig(t *testing.T, sc string) (*Config, error) {
	t.Helper()
	return ParseConfig([]byte(fmt.Sprintf(`{"source_type": "db", "source_config": {%s}}`, sc)))
}

func TestDBConfigDefaultsAndEnvironment(t *testing.T) {
	t.Setenv(EnvDataroomAPIURL, "http://127.0.0.1:9/api")
	t.Setenv(EnvDataroomAPIKey, dbTestKey)
	for _, name := range []string{"db", "DB"} {
		cfg, err := ParseConfig([]byte(`{"source_type": "` + name + `", "source_config": {}}`))
		if err != nil {
			t.Fatal(err)
		}
		dc := cfg.Source.(source.DataroomConfig)
		if cfg.SourceType != "db" || dc.APIURL != "http://127.0.0.1:9/api" || dc.APIKey != dbTestKey || dc.PageSize != 512 ||
			!dc.RequireImages || dc.MinShortEdge != source.Unset || dc.DuplicateState != source.Unset ||
			dc.Timeout != 30*time.Second || dc.MaxRetries != 5 || dc.WorldSize != 1 {
			t.Fatalf("%s: %v", name, dc)
		}
	}
	// Explicit values win over the environment; lists come as arrays or comma-separated strings.
	cfg, err := dbConfig(t, `"api_url": "https://h/api/", "api_key": "k", "tags": "a, b,,a", "sources": ["x", "y"],
		"duplicate_state": 0, "min_short_edge": 256, "timeout_s": 2.5, "max_retries": 0, "rank": 1, "world_size": 3`)
	if err != nil {
		t.Fatal(err)
	}
	dc := cfg.Source.(source.DataroomConfig)
	if dc.APIURL != "https://h/api/" || dc.APIKey != "k" || strings.Join(dc.Tags, "|") != "a|b" || strings.Join(dc.Sources, "|") != "x|y" ||
		dc.DuplicateState != 0 || dc.MinShortEdge != 256 || dc.Timeout != 2500*time.Millisecond || dc.MaxRetries != 0 {
		t.Fatalf("%v", dc)
	}
}

func TestDBConfigErrors(t *testing.T) {
	t.Setenv(EnvDataroomAPIURL, "")
	t.Setenv(EnvDataroomAPIKey, "")
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
		`"api_url": "http://h/", "tag": "a", ` + key:                                 `source_config.tag: unknown key (did you mean "tags"?)`,
		`"api_url": "http://h/", "api_key": 12`:                                      "source_config.api_key: must be a string",
	} {
		_, err := dbConfig(t, sc)
		var ce *ConfigError
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", sc, err, want)
		}
		if err != nil && strings.Contains(err.Error(), dbTestKey[:12]) {
			t.Errorf("the key leaks: %v", err)
		}
	}
}

// TestDBPipeline runs the dataroom source through the whole pipeline against a fake server: samples
// with masks, additional images, latents and metadata; then a 403 on the second page surfaces as the
// error of Next once the first page's samples are served.
func TestDBPipeline(t *testing.T) {
	const w, h = 120, 60
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	mask := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 2), uint8(y * 4), 90, 255})
			if x >= w/2 {
				mask.SetGray(x, y, color.Gray{255})
			}
		}
	}
	imgPNG, maskPNG := encodePNG(t, img), encodePNG(t, mask)
	var pages atomic.Int64
	var fail403 atomic.Bool
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(wr http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/f/img.png":
			wr.Write(imgPNG)
		case r.URL.Path == "/f/mask.png":
			wr.Write(maskPNG)
		case r.URL.Path == "/f/latent.npy":
			wr.Write([]byte{0x93, 'N', 'U', 'M', 'P', 'Y', 0, 1})
		case r.URL.Path == "/api/images/":
			n := pages.Add(1)
			if n == 2 && fail403.Load() {
				wr.WriteHeader(403)
				fmt.Fprint(wr, `{"detail": "You do not have permission to perform this action."}`)
				return
			}
			if r.URL.Query().Get("cursor") == "b" {
				fmt.Fprint(wr, `{"next": null, "results": []}`)
				return
			}
			var results []map[string]any
			for _, id := range []string{"a", "b"} {
				results = append(results, map[string]any{
					"id": id, "source": "S", "attributes": map[string]any{"score": 0.5, "n": 12345678901234},
					"tags": []string{"t"}, "duplicate_state": nil, "image_direct_url": srv.URL + "/f/img.png",
					"coca_embedding": map[string]any{"vector": []float64{0.5, -0.25}},
					"latents": []map[string]any{
						{"latent_type": "segmentation_mask", "file_direct_url": srv.URL + "/f/mask.png", "is_mask": true},
						{"latent_type": "masked_image", "file_direct_url": srv.URL + "/f/img.png", "is_mask": false},
						{"latent_type": "latent_vae", "file_direct_url": srv.URL + "/f/latent.npy", "is_mask": false},
					},
				})
			}
			json.NewEncoder(wr).Encode(map[string]any{"next": "http://" + r.Host + "/api/images/?cursor=b", "results": results})
		default:
			wr.WriteHeader(404)
		}
	}))
	defer srv.Close()
	open := func() *Client {
		c, err := NewFromJSON([]byte(fmt.Sprintf(`{"source_type": "db", "concurrency": 2,
			"source_config": {"api_url": %q, "api_key": %q, "page_size": 2, "has_masks": "segmentation_mask",
			                  "has_latents": "latent_vae,masked_image", "require_embeddings": true, "return_duplicate_state": true},
			"image_config": {"crop_and_resize": true, "default_image_size": 64, "downsampling_ratio": 16}}`, srv.URL+"/api/", dbTestKey)))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c
	}

	c := open()
	var got []string
	for {
		s, err := c.Next(10 * time.Second)
		if errors.Is(err, ErrEnd) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, s.ID)
		if len(s.Items) != 3 {
			t.Fatalf("items %+v", s.Items)
		}
		for _, it := range s.Items {
			switch it.Name {
			case "segmentation_mask":
				if it.Kind != ItemMask || it.Image.Width != s.Image.Width || it.Image.Height != s.Image.Height || it.Image.Channels != 1 {
					t.Fatalf("mask %+v vs image %dx%d", it.Image, s.Image.Width, s.Image.Height)
				}
			case "masked_image":
				if it.Kind != ItemAdditionalImage || it.Image.Width != s.Image.Width || it.Image.Height != s.Image.Height {
					t.Fatalf("additional image %+v", it.Image)
				}
			case "latent_vae":
				if it.Kind != ItemBytes || string(it.Bytes) != "\x93NUMPY\x00\x01" {
					t.Fatalf("latent %+v", it)
				}
			}
		}
		var meta map[string]any
		if err := json.Unmarshal(s.Meta, &meta); err != nil {
			t.Fatal(err)
		}
		if meta["source"] != "S" || fmt.Sprint(meta["embedding"]) != "[0.5 -0.25]" || meta["duplicate_state"] != nil ||
			!strings.Contains(string(s.Meta), `"n":12345678901234`) {
			t.Fatalf("meta %s", s.Meta)
		}
		s.Free()
	}
	c.Stop()
	if strings.Join(got, ",") != "a,b" && strings.Join(got, ",") != "b,a" {
		t.Fatalf("got %v", got)
	}

	// A 4xx on a page stops the stream with the server's message, after the samples already listed.
	pages.Store(0)
	fail403.Store(true)
	c = open()
	defer c.Stop()
	served := 0
	for {
		s, err := c.Next(10 * time.Second)
		if err == nil {
			served++
			s.Free()
			continue
		}
		if errors.Is(err, ErrEnd) || !strings.Contains(err.Error(), "HTTP 403 Forbidden: You do not have permission") {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(err.Error(), dbTestKey[:12]) {
			t.Fatalf("the key leaks: %v", err)
		}
		break
	}
	if served != 2 {
		t.Fatalf("%d samples before the error", served)
	}
	// The error stays: the next call reports it again rather than a silent end.
	if _, err := c.Next(time.Second); err == nil || errors.Is(err, ErrEnd) {
		t.Fatalf("second call: %v", err)
	}
}
