package webdataset

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"

	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/source/httpretry"
	"github.com/datago-dev/datago/internal/storage"
)

// Kind is "source_type": "webdataset".
var Kind = source.Kind{Names: []string{"webdataset", "wds"}, Parse: parse}

// maxConcurrentDownloads bounds source_config.concurrent_downloads (open connections per client).
const maxConcurrentDownloads = 1024

// defaults is source_config before its keys are read.
func defaults() Config {
	return Config{
		ShuffleBuffer:       defaultShuffleBuffer,
		ConcurrentDownloads: defaultConcurrentDownloads,
		WorldSize:           1,
		ImageKeys:           defaultImageKeys,
		Timeout:             defaultTimeout,
		MaxRetries:          defaultMaxRetries,
		RetryBackoff:        defaultRetryBackoff,
	}
}

func parse(r *confread.Reader, sc *confread.Object) source.Config {
	wc := defaults()
	var patterns []string
	r.StrOrList(sc, "url", &patterns, true)
	r.Boolean(sc, "shuffle", &wc.Shuffle)
	// random_sampling is the Rust loader's name for it.
	r.Alias(sc, "random_sampling", "shuffle")
	r.Boolean(sc, "random_sampling", &wc.Shuffle)
	r.Integer(sc, "shuffle_buffer", &wc.ShuffleBuffer, 1)
	seed := 0
	_, wc.SeedGiven = sc.Map()["seed"]
	r.Integer(sc, "seed", &seed, math.MinInt)
	wc.Seed = int64(seed)
	r.Integer(sc, "concurrent_downloads", &wc.ConcurrentDownloads, 1)
	if !r.Failed() && wc.ConcurrentDownloads > maxConcurrentDownloads {
		r.Fail(sc.Key("concurrent_downloads"), fmt.Sprintf("must be <= %d, got %d", maxConcurrentDownloads, wc.ConcurrentDownloads))
	}
	r.RankAndWorld(sc, &wc.Rank, &wc.WorldSize)
	var keys []string
	r.StrList(sc, "image_keys", &keys, false)
	if keys != nil {
		wc.ImageKeys = nil
		for i, k := range keys {
			k = strings.ToLower(strings.TrimPrefix(k, "."))
			if k == "" && !r.Failed() {
				r.Fail(fmt.Sprintf("%s[%d]", sc.Key("image_keys"), i), "must not be empty")
			}
			wc.ImageKeys = append(wc.ImageKeys, k)
		}
	}
	httpretry.ReadPolicy(r, sc, &wc.Timeout, &wc.MaxRetries)
	r.Str(sc, "auth_token", &wc.AuthToken, false)
	r.Str(sc, "reference_image_type", &wc.ReferenceImage, false)
	wc.ReferenceImage = strings.ToLower(strings.TrimPrefix(wc.ReferenceImage, "."))
	wc.Storage = storage.Parse(r, sc)
	if r.Failed() {
		return wc
	}
	wc.Shards = expandShards(r, sc, patterns)
	return wc
}

// expandShards expands the url patterns and checks them: supported schemes, and at least one shard
// that exists when all of them are local (missing shards among existing ones are skipped and reported
// when the source is read, like unreadable remote ones).
func expandShards(r *confread.Reader, sc *confread.Object, patterns []string) []string {
	var shards []string
	allLocal := true
	for i, p := range patterns {
		key := sc.Key("url")
		if len(patterns) > 1 {
			key = fmt.Sprintf("%s[%d]", key, i)
		}
		names, err := expandBraces(p)
		if err != nil {
			r.Fail(key, err.Error())
			return nil
		}
		for _, n := range names {
			if _, isHTTP, err := shardLocation(n); err != nil {
				r.Fail(key, err.Error())
				return nil
			} else if isHTTP {
				allLocal = false
			}
		}
		if len(shards)+len(names) > maxShards {
			r.Fail(sc.Key("url"), fmt.Sprintf("more than %d shards", maxShards))
			return nil
		}
		shards = append(shards, names...)
	}
	if allLocal {
		found := false
		var firstErr error
		for _, s := range shards {
			path, _, _ := shardLocation(s)
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
			r.Fail(sc.Key("url"), msg)
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

// NeedsSeed: shuffle without a seed (source.Seeded).
func (c Config) NeedsSeed() bool { return c.Shuffle && !c.SeedGiven }

// ShuffleSeed is the seed of the shuffle.
func (c Config) ShuffleSeed() (int64, bool) { return c.Seed, c.Shuffle }

// WithSeed sets the seed (source.Seeded).
func (c Config) WithSeed(seed int64) source.Config {
	c.Seed, c.SeedGiven = seed, true
	return c
}
