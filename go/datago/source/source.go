// Package source holds the places samples come from. A source lists sample descriptions (Items) in
// pages and fetches the bytes of one item on demand; the pipeline in package datago calls List from
// one goroutine and Fetch from its workers, so Fetch must be safe for concurrent use.
package source

import (
	"context"
	"errors"
)

// Item describes one sample before its bytes are read.
type Item struct {
	ID   string // reported to the user (the file path for the filesystem source)
	Path string // where the bytes are
}

// Raw is what a worker fetched for one item, before image processing.
type Raw struct {
	Image []byte
}

// Source lists items and fetches their bytes.
type Source interface {
	// List sends this rank's items to emit, page by page, until the source is exhausted, emit returns
	// false (the consumer stopped) or ctx is cancelled. Problems with single items are reported
	// through skip and do not end the listing; a returned error ends the stream as a failure.
	List(ctx context.Context, emit func(Item) bool, skip func(id, reason string, err error)) error
	// Fetch reads the bytes of one item.
	Fetch(ctx context.Context, it Item) (*Raw, error)
}

// Skip reasons shared by sources, reported in stats.
const (
	ReasonReadError = "read_error"
	ReasonEmpty     = "empty"
	ReasonTooLarge  = "too_large"
)

// ErrEmpty is returned by Fetch for an item with no bytes.
var ErrEmpty = errors.New("empty file")
