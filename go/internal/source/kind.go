package source

import "github.com/datago-dev/datago/internal/confread"

// Kind is one value of source_type: its accepted spellings and how to read its source_config.
type Kind struct {
	Names []string // accepted spellings of source_type (compared without case); the first is canonical
	// Parse reads source_config, setting every default and checking every value, so that Open has
	// nothing left to validate; the caller reports its unknown keys (r.Finish) after.
	Parse func(r *confread.Reader, sc *confread.Object) Config
}

// Seeded is implemented by source configs with a seeded shuffle. NeedsSeed reports whether the
// shuffle is on and the config gave no seed; the configuration then draws one (a fresh order per
// client, as the Rust loader does) or takes the resume state's, and sets it with WithSeed.
type Seeded interface {
	NeedsSeed() bool
	ShuffleSeed() (int64, bool) // the seed in use, false when the source does not shuffle
	WithSeed(seed int64) Config
}

// Config is a parsed source_config.
type Config interface {
	// Open returns the source; the error is one only the running system can give (not a config mistake).
	Open(Common) (Source, error)
}

// Common is what the pipeline hands every source it opens.
type Common struct {
	// MaxFileBytes is max_file_bytes, always > 0: a file, HTTP body or tar member larger than this is
	// not read, and its sample is skipped as too_large.
	MaxFileBytes int64
	// Fetchers is the size of the pipeline's fetch pool (the concurrent Fetch calls), for sizing the
	// sources' connection pools.
	Fetchers int
	// Go starts a goroutine. Every goroutine a source starts goes through it, so that the pipeline
	// turns a panic there into a failure of the client rather than a dead host process.
	Go func(name string, fn func())
}
