package datago

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/faults"
	"github.com/datago-dev/datago/internal/testimg"
)

// The sources through the whole pipeline; each source's own tests are in its package.

const dbTestKey = "f00dfeedf00dfeedf00dfeedf00dfeedf00dk3y9"

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
	imgPNG, maskPNG := testimg.PNG(t, img), testimg.PNG(t, mask)
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

func TestClientReadsWebDatasetShards(t *testing.T) {
	dir := t.TempDir()
	var shards []string
	for s := 0; s < 3; s++ {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		add := func(name string, data []byte) {
			tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
			tw.Write(data)
		}
		for i := 0; i < 8; i++ {
			key := fmt.Sprintf("k%d_%d", s, i)
			add(key+".png", testimg.GradientPNG(t, 40+i, 30, uint8(i)))
			add(key+".txt", []byte("caption "+key))
			add(key+".cls", []byte(fmt.Sprint(i)))
			add(key+".json", []byte(`{"w": `+fmt.Sprint(40+i)+`}`))
			add(key+".mask.png", testimg.GradientPNG(t, 4, 4, 1))
		}
		add("broken.png", []byte("not a png"))
		tw.Close()
		p := filepath.Join(dir, fmt.Sprintf("s%d.tar", s))
		os.WriteFile(p, b.Bytes(), 0o644)
		shards = append(shards, p)
	}
	before := runtime.NumGoroutine()
	c, err := NewFromJSON([]byte(fmt.Sprintf(`{"source_type": "webdataset", "concurrency": 2,
		"source_config": {"url": %q, "shuffle": true, "concurrent_downloads": 2},
		"image_config": {"crop_and_resize": true, "default_image_size": 32, "downsampling_ratio": 16}}`, dir+"/s{0..2}.tar")))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		s, err := c.Next(10 * time.Second)
		if errors.Is(err, ErrEnd) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var meta map[string]any
		if err := json.Unmarshal(s.Meta, &meta); err != nil {
			t.Fatal(err)
		}
		key := meta["key"].(string)
		attrs := meta["attributes"].(map[string]any)
		if s.ID != meta["shard"].(string)+"#"+key || meta["caption"] != "caption "+key || attrs["w"] != float64(s.Image.OriginalWidth) ||
			len(s.Items) != 1 || s.Items[0].Name != "mask.png" || s.Items[0].Kind != ItemBytes || s.Image.Width == 0 {
			t.Fatalf("sample %s: %s, %+v", s.ID, s.Meta, s.Items)
		}
		n++
		s.Free()
	}
	st := c.Stats()
	c.Stop()
	if n != 24 || st.Skipped[ReasonDecodeError] != 3 || st.SkippedTotal != 3 {
		t.Fatalf("%d samples, stats %+v", n, st)
	}
	waitGoroutines(t, before+2)
}

// A panic in a goroutine a source started (through source.Common.Go) fails the client like a
// panic in any stage: an error from Next, the process alive, no goroutine left.
func TestPanicInASourceGoroutineFailsTheClient(t *testing.T) {
	dir := t.TempDir()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := 0; i < 4; i++ {
		data := testimg.GradientPNG(t, 16, 16, uint8(i))
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("k%d.png", i), Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg})
		tw.Write(data)
	}
	tw.Close()
	shard := filepath.Join(dir, "s.tar")
	if err := os.WriteFile(shard, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	base := runtime.NumGoroutine()
	t.Setenv(faults.Env, "webdataset.shard") // the shard reader panics, in a goroutine the source started
	c, err := NewFromJSON([]byte(fmt.Sprintf(`{"source_type": "webdataset", "source_config": {"url": %q}}`, shard)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	for {
		s, err := c.Next(10 * time.Second)
		if err == nil {
			s.Free()
			continue
		}
		if !strings.Contains(err.Error(), "internal error in the source") || !strings.Contains(err.Error(), "injected panic at webdataset.shard") {
			t.Fatalf("want the source goroutine's panic as the client's error, got %v", err)
		}
		break
	}
	c.Stop()
	waitGoroutines(t, base)
}
