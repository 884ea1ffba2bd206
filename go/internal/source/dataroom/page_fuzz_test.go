package dataroom

import (
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDataroomPage: parsing any page body never panics; a page that parses has results that are
// either servable (an id, metadata that serialises to JSON) or carry an error, and latents that are
// classified.
func FuzzDataroomPage(f *testing.F) {
	for _, seed := range []string{
		`{"next": null, "results": []}`,
		`{"next": "http://127.0.0.1:8000/api/images/?cursor=abc&page_size=2", "results": [
		  {"id": "abc", "source": "s", "attributes": {"score": 0.5, "big": 12345678901234567890, "nested": {"a": [1, null]}},
		   "image_direct_url": "http://h/f/abc/original.jpg?sig=x", "tags": ["t"], "duplicate_state": 2,
		   "coca_embedding": {"vector": [0.25, -1e-7, 3.4e38], "author": null},
		   "latents": [{"latent_type": "segmentation_mask", "file_direct_url": "http://h/m.png", "is_mask": true},
		               {"latent_type": "masked_image", "file_direct_url": "http://h/i.png", "is_mask": false},
		               {"latent_type": "latent_vae", "file_direct_url": "http://h/v.npy", "is_mask": false}]}]}`,
		`{"next": null}`,
		`["\"partitions_count\" should be between 2 and 48"]`,
		`{"detail": "Invalid token."}`,
		`<html>Server Error (500)</html>`,
		`{"next": 3, "results": []}`,
		`{"results": [17, null, {"id": null}, {"id": 1e400}, {"id": "x", "attributes": "s"}, {"id": "y", "coca_embedding": {"vector": [1e39]}}]}`,
		`{"results": [{"id": "x", "duplicate_state": "1"}, {"id": "z", "latents": [{"latent_type": ""}]}]}`,
		`null`,
		``,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		page, err := parsePage(body)
		if err != nil {
			if page != nil {
				t.Fatal("a page with an error")
			}
			return
		}
		for i, rec := range page.Results {
			if rec.ID == "" {
				t.Fatalf("result %d has no id", i)
			}
			if rec.Err != nil {
				if !strings.HasPrefix(rec.Err.Error(), "dataroom: result ") {
					t.Fatalf("error %q", rec.Err)
				}
				continue
			}
			meta, err := json.Marshal(rec.Meta)
			if err != nil {
				t.Fatalf("metadata of %q does not serialise: %v", rec.ID, err)
			}
			var back map[string]any
			if err := json.Unmarshal(meta, &back); err != nil {
				t.Fatalf("metadata of %q is not a JSON object: %s", rec.ID, meta)
			}
			if _, ok := back["attributes"].(map[string]any); !ok {
				t.Fatalf("attributes of %q: %s", rec.ID, meta)
			}
			for _, l := range rec.Latents {
				if l.Type == "" || l.URL == "" {
					t.Fatalf("latent %+v", l)
				}
				if k := l.kind(); k != latentBytes && k != latentMask && k != latentImage {
					t.Fatalf("kind %d", k)
				}
			}
		}
	})
}
