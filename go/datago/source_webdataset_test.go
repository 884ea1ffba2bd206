package datago

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/source"
)

func TestParseWebDatasetConfig(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"s-000.tar", "s-001.tar"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := ParseConfig([]byte(fmt.Sprintf(`{"source_type": "WDS", "source_config": {"url": %q}}`, dir+"/s-{000..001}.tar")))
	if err != nil {
		t.Fatal(err)
	}
	wc := cfg.Source.(source.WebDatasetConfig)
	if cfg.SourceType != "webdataset" || len(wc.Shards) != 2 || wc.Shards[1] != dir+"/s-001.tar" || wc.Shuffle ||
		wc.ShuffleBuffer != 1000 || wc.Seed != 0 || wc.ConcurrentDownloads != 8 || wc.Rank != 0 || wc.WorldSize != 1 ||
		strings.Join(wc.ImageKeys, ",") != "jpg,jpeg,png,webp" || wc.Timeout != 30*time.Second || wc.MaxRetries != 5 {
		t.Fatalf("defaults: %+v", wc)
	}
	cfg, err = ParseConfig([]byte(`{"source_type": "webdataset", "source_config": {
		"url": ["http://h/a-{0..2}.tar", "https://h/b.tgz"], "shuffle": true, "shuffle_buffer": 10, "seed": -3,
		"concurrent_downloads": 2, "rank": 1, "world_size": 2, "image_keys": [".PNG", "jpg"], "timeout_s": 0.5, "max_retries": 0}}`))
	if err != nil {
		t.Fatal(err)
	}
	wc = cfg.Source.(source.WebDatasetConfig)
	if len(wc.Shards) != 4 || wc.Shards[3] != "https://h/b.tgz" || !wc.Shuffle || wc.ShuffleBuffer != 10 || wc.Seed != -3 ||
		wc.ConcurrentDownloads != 2 || wc.Rank != 1 || wc.WorldSize != 2 || strings.Join(wc.ImageKeys, ",") != "png,jpg" ||
		wc.Timeout != 500*time.Millisecond || wc.MaxRetries != 0 {
		t.Fatalf("parsed: %+v", wc)
	}
}

func TestWebDatasetConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	shard := filepath.Join(dir, "s.tar")
	if err := os.WriteFile(shard, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wds := func(sc string) string { return `{"source_type": "webdataset", "source_config": {` + sc + `}}` }
	u := fmt.Sprintf(`"url": %q`, shard)
	cases := []struct{ json, key, contains string }{
		{wds(``), "source_config.url", "required"},
		{wds(`"url": ""`), "source_config.url", "empty"},
		{wds(`"url": 3`), "source_config.url", "a string or a list of strings"},
		{wds(`"url": []`), "source_config.url", "empty list"},
		{wds(`"url": ["http://h/a.tar", 3]`), "source_config.url[1]", "must be a string"},
		{wds(`"url": "http://h/s-{000..009.tar"`), "source_config.url", "malformed brace pattern"},
		{wds(`"url": ["http://h/a.tar", "http://h/{x}.tar"]`), "source_config.url[1]", "neither a list"},
		{wds(`"url": "http://h/{0..99999999}.tar"`), "source_config.url", "more than"},
		{wds(`"url": "s3://bucket/a.tar"`), "source_config.url", "unsupported scheme"},
		{wds(fmt.Sprintf(`"url": %q`, dir+"/nothing-{0..3}.tar")), "source_config.url", "no shard matches"},
		{wds(fmt.Sprintf(`"url": %q`, dir)), "source_config.url", "no shard matches"},
		{wds(u + `, "shuffle": "yes"`), "source_config.shuffle", "boolean"},
		{wds(u + `, "shuffle_buffer": 0`), "source_config.shuffle_buffer", ">= 1"},
		{wds(u + `, "seed": 1.5`), "source_config.seed", "integer"},
		{wds(u + `, "concurrent_downloads": 0`), "source_config.concurrent_downloads", ">= 1"},
		{wds(u + `, "concurrent_downloads": 100000`), "source_config.concurrent_downloads", "<= 1024"},
		{wds(u + `, "rank": 2, "world_size": 2`), "source_config.rank", "< world_size"},
		{wds(u + `, "image_keys": "jpg"`), "source_config.image_keys", "a list of strings"},
		{wds(u + `, "image_keys": []`), "source_config.image_keys", "empty list"},
		{wds(u + `, "image_keys": ["jpg", "."]`), "source_config.image_keys[1]", "empty"},
		{wds(u + `, "timeout_s": 0`), "source_config.timeout_s", "> 0"},
		{wds(u + `, "max_retries": -1`), "source_config.max_retries", ">= 0"},
		{wds(u + `, "shufle": true`), "source_config.shufle", `did you mean "shuffle"`},
		{wds(u + `, "root_path": "/"`), "source_config.root_path", "unknown key"},
	}
	for _, c := range cases {
		_, err := ParseConfig([]byte(c.json))
		var ce *ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want a ConfigError", c.json, err)
			continue
		}
		if ce.Key != c.key || !strings.Contains(ce.Error(), c.contains) {
			t.Errorf("%s: got %q (key %q), want key %q and %q", c.json, ce.Error(), ce.Key, c.key, c.contains)
		}
	}
}

func pngBytes(t *testing.T, w, h int, seed uint8) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), seed, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
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
			add(key+".png", pngBytes(t, 40+i, 30, uint8(i)))
			add(key+".txt", []byte("caption "+key))
			add(key+".cls", []byte(fmt.Sprint(i)))
			add(key+".json", []byte(`{"w": `+fmt.Sprint(40+i)+`}`))
			add(key+".mask.png", pngBytes(t, 4, 4, 1))
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
