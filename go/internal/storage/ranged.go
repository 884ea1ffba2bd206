package storage

import (
	"context"
	"io"
)

// OpenAt is Open from byte off: a ranged read, resumed as Open's stream is (a planned WebDataset run
// reads each sample by its byte range in its shard).
func (s *Store) OpenAt(ctx context.Context, loc, version string, off int64) io.ReadCloser {
	return &stream{store: s, ctx: ctx, url: loc, version: version, size: -1, off: off}
}
