// Package source is what every place samples come from shares: the Source interface, the Item a
// listing produces, the Raw bytes a fetch returns, the skip reasons, and the Kind / Config / Common
// contract through which the configuration opens a source. A source lists sample descriptions
// (items) in pages and fetches the bytes of one item on demand; the pipeline in package datago calls
// List from one goroutine and Fetch from its workers, so Fetch must be safe for concurrent use. Each
// source lives in a subpackage (filesystem, dataroom, webdataset) that owns its config, its IO and
// its tests.
package source

import (
	"context"
	"errors"
	"fmt"
)

// Item describes one sample before its bytes are read.
type Item struct {
	ID   string // reported to the user (the file path for the filesystem source)
	Path string // where the bytes are
	Raw  *Raw   // set when listing already produced the bytes (archives); Fetch then returns it
	Ref  any    // anything else the source needs to fetch the item
}

// Raw is what a worker fetched for one item, before image processing.
type Raw struct {
	Image            []byte
	NoImage          bool           // the sample has no main image by design (not an empty file)
	Masks            []Named        // decoded as single-channel images aligned with Image
	AdditionalImages []Named        // decoded as RGB images aligned with Image
	Bytes            []Named        // delivered as they are (latents, extra archive members)
	Meta             map[string]any // JSON-serialisable metadata, delivered as sample.metadata
}

// Named is one named member of a sample.
type Named struct {
	Name string
	Data []byte
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

// ErrEmpty is returned by Fetch for an item with no bytes.
var ErrEmpty = errors.New("empty file")

// TooLargeError is returned by Fetch for an item larger than max_file_bytes; its sample is
// skipped as too_large.
type TooLargeError struct {
	What  string
	Size  int64 // -1 when unknown (the body went past the limit)
	Limit int64
}

func (e *TooLargeError) Error() string {
	if e.Size < 0 {
		return fmt.Sprintf("%s: more than max_file_bytes (%d bytes)", e.What, e.Limit)
	}
	return fmt.Sprintf("%s: %d bytes, more than max_file_bytes (%d)", e.What, e.Size, e.Limit)
}

// SkipReason: too_large.
func (e *TooLargeError) SkipReason() string { return ReasonTooLarge }

// Size is the number of bytes fetched for r.
func (r *Raw) Size() int {
	n := len(r.Image)
	for _, list := range [][]Named{r.Masks, r.AdditionalImages, r.Bytes} {
		for _, m := range list {
			n += len(m.Data)
		}
	}
	return n
}

// Epochs is implemented by sources whose listing depends on the epoch (a seeded shuffle drawn
// anew for each epoch). The client calls SetEpoch before each List.
type Epochs interface {
	SetEpoch(epoch int)
}

// Replayable is implemented by sources that can tell when listing twice may not give the same
// order (a server's random sampling, shards read as they arrive): exact resume needs it.
// Unreplayable returns why, or "" when the listing is reproducible.
type Replayable interface {
	Unreplayable() string
}

// Cataloged is implemented by sources that can list every rank's items, which a planned run
// (equal_steps, package plan) needs: each share computes every share's items from the catalog.
type Cataloged interface {
	// Catalog lists the items of every rank, sorted by key (what dispatch hashes), each once.
	Catalog(ctx context.Context, skip func(id, reason string, err error)) (items []Item, keys []string, err error)
	// Topology is source_config's rank and world_size.
	Topology() (rank, world int)
	// Shuffled reports whether each epoch is a seeded shuffle of the catalog, and its seed.
	Shuffled() (bool, int64)
}

// Headed is implemented by sources that can read the beginning of an item cheaply (the image header
// a planned run with batches reads to learn each item's bucket before decoding).
type Headed interface {
	Head(ctx context.Context, it Item, n int) ([]byte, error)
}

// Sized is implemented by sources whose listing may give an item's image size (width, height, as
// decoding orients it): a planned run then takes its bucket from there, without reading its header.
type Sized interface {
	Size(it Item) (width, height int, ok bool)
}

// EpochSeed derives the seed of an epoch from the configured one (splitmix64): epoch 0 keeps it.
func EpochSeed(seed int64, epoch int) int64 {
	if epoch == 0 {
		return seed
	}
	z := uint64(seed) + uint64(epoch)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return int64(z ^ (z >> 31))
}
