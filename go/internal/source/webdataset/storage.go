package webdataset

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/storage"
)

// isShardName reports whether an object listed under a prefix is a shard.
func isShardName(key string) bool {
	k := strings.ToLower(key)
	return strings.HasSuffix(k, ".tar") || strings.HasSuffix(k, ".tar.gz") || strings.HasSuffix(k, ".tgz")
}

// listPrefixes replaces every object-store url ending in "/" by the shards under it, in key order,
// and checks the first object-store shard named directly (a missing one is not an error: it is
// skipped when read, as a missing local shard among others is): wrong credentials, a missing bucket and
// an empty prefix fail here, with the provider's code and message (a refusal is a *confread.Error
// naming url, a configuration mistake), rather than as a stream of skipped shards.
func (w *Source) listPrefixes(ctx context.Context) ([]string, error) {
	var out []string
	checked := false
	for _, s := range w.cfg.Shards {
		if !storage.Remote(s) {
			out = append(out, s)
			continue
		}
		if !strings.HasSuffix(s, "/") {
			if !checked {
				checked = true
				if err := w.store.Probe(ctx, s); err != nil && !errors.Is(err, storage.ErrNotFound) {
					return nil, urlError(err) // a missing shard among others is skipped when read
				}
			}
			out = append(out, s)
			continue
		}
		n := 0
		err := w.store.List(ctx, s, func(o storage.Object) bool {
			if isShardName(o.Key) {
				out = append(out, o.URL)
				n++
			}
			return len(out) <= maxShards
		})
		if err != nil {
			return nil, urlError(err)
		}
		if len(out) > maxShards {
			return nil, &confread.Error{Key: "source_config.url", Msg: fmt.Sprintf("more than %d shards", maxShards)}
		}
		if n == 0 {
			return nil, &confread.Error{Key: "source_config.url", Msg: fmt.Sprintf("no .tar, .tar.gz or .tgz object under %s", s)}
		}
	}
	return out, nil
}

func urlError(err error) error {
	if storage.Refusal(err) {
		return &confread.Error{Key: "source_config.url", Msg: err.Error()}
	}
	return fmt.Errorf("source_config.url: %w", err)
}
