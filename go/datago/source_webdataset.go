package datago

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/datago-dev/datago/internal/source"
)

func init() {
	registerSource(&sourceKind{
		names: []string{"webdataset", "wds"},
		parse: parseWebDataset,
		open: func(cfg *Config) (source.Source, error) {
			wc := cfg.Source.(source.WebDatasetConfig)
			wc.MaxMemberSize = cfg.MaxFileBytes
			return source.NewWebDataset(wc), nil
		},
	})
}

// maxConcurrentDownloads bounds source_config.concurrent_downloads (open connections per client).
const maxConcurrentDownloads = 1024

func parseWebDataset(r *reader, sc *object) any {
	wc := source.WebDatasetConfig{
		ShuffleBuffer:       source.DefaultShuffleBuffer,
		ConcurrentDownloads: source.DefaultConcurrentDownloads,
		WorldSize:           1,
		ImageKeys:           source.DefaultImageKeys,
		Timeout:             source.DefaultWDSTimeout,
		MaxRetries:          source.DefaultMaxRetries,
	}
	var patterns []string
	r.strList(sc, "url", &patterns, true, true)
	r.boolean(sc, "shuffle", &wc.Shuffle)
	r.integer(sc, "shuffle_buffer", &wc.ShuffleBuffer, 1)
	seed := 0
	r.integer(sc, "seed", &seed, math.MinInt)
	wc.Seed = int64(seed)
	r.integer(sc, "concurrent_downloads", &wc.ConcurrentDownloads, 1)
	if r.err == nil && wc.ConcurrentDownloads > maxConcurrentDownloads {
		r.fail(sc.key("concurrent_downloads"), fmt.Sprintf("must be <= %d, got %d", maxConcurrentDownloads, wc.ConcurrentDownloads))
	}
	r.rankAndWorld(sc, &wc.Rank, &wc.WorldSize)
	var keys []string
	r.strList(sc, "image_keys", &keys, false, false)
	if keys != nil {
		wc.ImageKeys = nil
		for i, k := range keys {
			k = strings.ToLower(strings.TrimPrefix(k, "."))
			if k == "" && r.err == nil {
				r.fail(fmt.Sprintf("%s[%d]", sc.key("image_keys"), i), "must not be empty")
			}
			wc.ImageKeys = append(wc.ImageKeys, k)
		}
	}
	timeout := wc.Timeout.Seconds()
	r.float(sc, "timeout_s", &timeout)
	if r.err == nil && (timeout <= 0 || timeout > 86400) {
		r.fail(sc.key("timeout_s"), fmt.Sprintf("must be > 0 and <= 86400, got %g", timeout))
	}
	wc.Timeout = time.Duration(timeout * float64(time.Second))
	r.integer(sc, "max_retries", &wc.MaxRetries, 0)
	if r.err != nil {
		return wc
	}
	wc.Shards = expandShards(r, sc, patterns)
	return wc
}

// expandShards expands the url patterns and checks them: supported schemes, and at least one shard
// that exists when all of them are local (missing shards among existing ones are skipped and reported
// when the source is read, like unreadable remote ones).
func expandShards(r *reader, sc *object, patterns []string) []string {
	var shards []string
	allLocal := true
	for i, p := range patterns {
		key := sc.key("url")
		if len(patterns) > 1 {
			key = fmt.Sprintf("%s[%d]", key, i)
		}
		names, err := source.ExpandBraces(p)
		if err != nil {
			r.fail(key, err.Error())
			return nil
		}
		for _, n := range names {
			if _, isHTTP, err := source.ShardLocation(n); err != nil {
				r.fail(key, err.Error())
				return nil
			} else if isHTTP {
				allLocal = false
			}
		}
		if len(shards)+len(names) > source.MaxWDSShards {
			r.fail(sc.key("url"), fmt.Sprintf("more than %d shards", source.MaxWDSShards))
			return nil
		}
		shards = append(shards, names...)
	}
	if allLocal {
		found := false
		var firstErr error
		for _, s := range shards {
			path, _, _ := source.ShardLocation(s)
			st, err := os.Stat(path)
			if err == nil && !st.IsDir() {
				found = true
				break
			}
			if firstErr == nil {
				if err == nil {
					err = errors.New(path + " is a directory")
				}
				firstErr = err
			}
		}
		if !found {
			msg := fmt.Sprintf("no shard matches %s", quoteList(patterns))
			if firstErr != nil {
				msg += " (" + firstErr.Error() + ")"
			}
			r.fail(sc.key("url"), msg)
			return nil
		}
	}
	return shards
}

func quoteList(list []string) string {
	q := make([]string, len(list))
	for i, s := range list {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
