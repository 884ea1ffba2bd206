package webdataset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/confread"
)

// parseConfig reads {sc} as source_config, as the configuration does.
func parseConfig(t *testing.T, sc string) (Config, error) {
	t.Helper()
	return confread.ReadSection[Config]([]byte("{"+sc+"}"), "source_config", parse)
}

func TestParseWebDatasetConfig(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"s-000.tar", "s-001.tar"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wc, err := parseConfig(t, fmt.Sprintf(`"url": %q`, dir+"/s-{000..001}.tar"))
	if err != nil {
		t.Fatal(err)
	}
	if len(wc.Shards) != 2 || wc.Shards[1] != dir+"/s-001.tar" || wc.Shuffle ||
		wc.ShuffleBuffer != 1000 || wc.Seed != 0 || wc.ConcurrentDownloads != 8 || wc.Rank != 0 || wc.WorldSize != 1 ||
		strings.Join(wc.ImageKeys, ",") != "jpg,jpeg,png,webp" || wc.Timeout != 30*time.Second || wc.MaxRetries != 5 || wc.RetryBackoff != defaultRetryBackoff {
		t.Fatalf("defaults: %+v", wc)
	}
	wc, err = parseConfig(t, `
		"url": ["http://h/a-{0..2}.tar", "https://h/b.tgz"], "shuffle": true, "shuffle_buffer": 10, "seed": -3,
		"concurrent_downloads": 2, "rank": 1, "world_size": 2, "image_keys": [".PNG", "jpg"], "timeout_s": 0.5, "max_retries": 0`)
	if err != nil {
		t.Fatal(err)
	}
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
	wds := func(sc string) string { return sc }
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
		{wds(`"url": "ftp://bucket/a.tar"`), "source_config.url", "unsupported scheme"},
		{wds(`"url": "s3://"`), "source_config.url", "names no bucket"},
		{wds(`"url": "s3://b/a.tar", "storage": {"endpoint_url": "localhost:9000"}`), "source_config.storage.endpoint_url", "http:// or https://"},
		{wds(`"url": "s3://b/a.tar", "storage": {"anonymous": "yes"}`), "source_config.storage.anonymous", "boolean"},
		{wds(`"url": "s3://b/a.tar", "storage": {"regoin": "eu-west-1"}`), "source_config.storage.regoin", "did you mean"},
		{wds(`"url": "s3://b/a.tar", "storage": 3`), "source_config.storage", "must be an object"},
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
		{wds(u + `, "max_retries": 101`), "source_config.max_retries", "<= 100"},
		{wds(u + `, "shufle": true`), "source_config.shufle", `did you mean "shuffle"`},
		{wds(u + `, "root_path": "/"`), "source_config.root_path", "unknown key"},
	}
	for _, c := range cases {
		_, err := parseConfig(t, c.json)
		var ce *confread.Error
		if !errors.As(err, &ce) {
			t.Errorf("%s: got %v, want a ConfigError", c.json, err)
			continue
		}
		if ce.Key != c.key || !strings.Contains(ce.Error(), c.contains) {
			t.Errorf("%s: got %q (key %q), want key %q and %q", c.json, ce.Error(), ce.Key, c.key, c.contains)
		}
	}
}
