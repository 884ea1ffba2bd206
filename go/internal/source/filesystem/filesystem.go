// Package filesystem is the "filesystem" source: the images under a directory tree, listed as a
// stream in directory order or, with random_sampling, all at once and shuffled per epoch.
package filesystem

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/datago-dev/datago/internal/source"
)

// Config is source_config for "source_type": "filesystem".
type Config struct {
	RootPath  string
	PageSize  int // directory entries read per system call
	Rank      int
	WorldSize int
	// RandomSampling lists the whole tree first, then serves it in a seeded random order, drawn
	// anew each epoch (source.EpochSeed). Without it the listing streams in directory order.
	RandomSampling bool
	Seed           int64
	SeedGiven      bool // source_config.seed was set
}

// NeedsSeed: random_sampling without a seed (source.Seeded).
func (c Config) NeedsSeed() bool { return c.RandomSampling && !c.SeedGiven }

// ShuffleSeed is the seed of random_sampling.
func (c Config) ShuffleSeed() (int64, bool) { return c.Seed, c.RandomSampling }

// WithSeed sets the seed (source.Seeded).
func (c Config) WithSeed(seed int64) source.Config {
	c.Seed, c.SeedGiven = seed, true
	return c
}

// Source serves the images under a directory tree, streaming the listing: the first sample does
// not wait for a large tree to be listed.
type Source struct {
	cfg      Config
	maxBytes int64 // a larger file is not read (source.TooLargeError)
	epoch    int
	rootOnce sync.Once
	realRoot string
}

// New returns the source of cfg; maxFileBytes (> 0) bounds the files it reads.
func New(cfg Config, maxFileBytes int64) *Source { return &Source{cfg: cfg, maxBytes: maxFileBytes} }

// Open is New with the pipeline's limit.
func (c Config) Open(common source.Common) (source.Source, error) {
	return New(c, common.MaxFileBytes), nil
}

// isImageName reports whether name has an image extension datago serves, in any letter case.
func isImageName(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif":
		return true
	}
	return false
}

type dirKey struct{ dev, ino uint64 }

// SetEpoch selects the epoch whose order List serves (with RandomSampling).
func (f *Source) SetEpoch(epoch int) { f.epoch = epoch }

// List serves this rank's images: streamed in directory order, or, with RandomSampling, all listed,
// sorted, then shuffled with the epoch's seed.
func (f *Source) List(ctx context.Context, emit func(source.Item) bool, skip func(string, string, error)) error {
	if !f.cfg.RandomSampling {
		return f.walk(ctx, false, emit, skip)
	}
	all, err := f.All(ctx, skip)
	if err != nil || ctx.Err() != nil {
		return err
	}
	rng := rand.New(rand.NewSource(source.EpochSeed(f.cfg.Seed, f.epoch)))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for _, it := range all {
		if !emit(it) {
			return nil
		}
	}
	return nil
}

// All lists this rank's images, sorted by path.
func (f *Source) All(ctx context.Context, skip func(string, string, error)) ([]source.Item, error) {
	var all []source.Item
	err := f.walk(ctx, false, func(it source.Item) bool { all = append(all, it); return true }, skip)
	sort.Slice(all, func(i, j int) bool { return all[i].Path < all[j].Path })
	return all, err
}

// Catalog lists every rank's images, sorted by their path relative to the root (the dispatch key).
func (f *Source) Catalog(ctx context.Context, skip func(string, string, error)) ([]source.Item, []string, error) {
	var all []source.Item
	err := f.walk(ctx, true, func(it source.Item) bool { all = append(all, it); return true }, skip)
	keys := make([]string, len(all))
	for i, it := range all {
		rel, _ := filepath.Rel(f.cfg.RootPath, it.Path)
		keys[i] = filepath.ToSlash(rel)
	}
	idx := make([]int, len(all))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return keys[idx[a]] < keys[idx[b]] })
	items, sorted := make([]source.Item, len(all)), make([]string, len(all))
	for i, j := range idx {
		items[i], sorted[i] = all[j], keys[j]
	}
	return items, sorted, err
}

// Topology is source_config's rank and world_size.
func (f *Source) Topology() (int, int) { return f.cfg.Rank, f.cfg.WorldSize }

// Shuffled is random_sampling and seed.
func (f *Source) Shuffled() (bool, int64) { return f.cfg.RandomSampling, f.cfg.Seed }

// walk visits the tree depth first, keeping this rank's images (every rank's with all). Symbolic links are followed, and every directory is entered at
// most once (by device and inode), so symlink cycles end.
func (f *Source) walk(ctx context.Context, all bool, emit func(source.Item) bool, skip func(string, string, error)) error {
	root := f.cfg.RootPath
	seen := map[dirKey]bool{}
	if k, err := keyOf(root); err == nil {
		seen[k] = true
	} else {
		return fmt.Errorf("source_config.root_path: %w", err)
	}
	stack := []string{root}
	batch := max(f.cfg.PageSize, 1)
	for len(stack) > 0 {
		dir := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		d, err := os.Open(dir)
		if err != nil {
			skip(dir, source.ReasonReadError, err)
			continue
		}
		for {
			if ctx.Err() != nil {
				d.Close()
				return nil
			}
			entries, err := d.ReadDir(batch)
			for _, e := range entries {
				p := filepath.Join(dir, e.Name())
				isDir, isFile := e.IsDir(), e.Type().IsRegular()
				if e.Type()&os.ModeSymlink != 0 {
					st, serr := os.Stat(p)
					if serr != nil {
						continue // dangling link
					}
					isDir, isFile = st.IsDir(), st.Mode().IsRegular()
					// A link to a file of the tree would serve that file twice.
					if isFile && f.insideRoot(p) {
						continue
					}
				}
				switch {
				case isDir:
					if k, kerr := keyOf(p); kerr == nil && !seen[k] {
						seen[k] = true
						stack = append(stack, p)
					}
				case isFile && isImageName(e.Name()):
					rel, _ := filepath.Rel(root, p)
					if !all && source.Rank(filepath.ToSlash(rel), f.cfg.WorldSize) != f.cfg.Rank {
						continue
					}
					if !emit(source.Item{ID: p, Path: p}) {
						d.Close()
						return nil
					}
				}
			}
			if err == io.EOF || (err == nil && len(entries) == 0) {
				break
			}
			if err != nil {
				skip(dir, source.ReasonReadError, err)
				break
			}
		}
		d.Close()
	}
	return nil
}

// insideRoot reports whether the link p resolves to a file under the root (served by its own path).
func (f *Source) insideRoot(p string) bool {
	f.rootOnce.Do(func() { f.realRoot, _ = filepath.EvalSymlinks(f.cfg.RootPath) })
	target, err := filepath.EvalSymlinks(p)
	if err != nil || f.realRoot == "" {
		return false
	}
	rel, err := filepath.Rel(f.realRoot, target)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

func keyOf(path string) (dirKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return dirKey{}, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return dirKey{}, fmt.Errorf("%s: no inode information", path)
	}
	return dirKey{uint64(sys.Dev), uint64(sys.Ino)}, nil
}

// Head reads up to the first n bytes of it's file.
func (f *Source) Head(_ context.Context, it source.Item, n int) ([]byte, error) {
	file, err := os.Open(it.Path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	b := make([]byte, n)
	k, err := io.ReadFull(file, b)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
	}
	return b[:k], err
}

// Fetch reads the file of it, refusing one larger than max_file_bytes before reading it.
func (f *Source) Fetch(_ context.Context, it source.Item) (*source.Raw, error) {
	file, err := os.Open(it.Path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, err
	}
	limit := f.maxBytes
	if st.Size() > limit {
		return nil, &source.TooLargeError{What: it.Path, Size: st.Size(), Limit: limit}
	}
	var b []byte
	if n := st.Size(); n > 0 {
		b = make([]byte, n)
		_, err = io.ReadFull(file, b)
	} else {
		// No size (a pseudo-file): read up to one byte past the limit to tell.
		b, err = io.ReadAll(io.LimitReader(file, limit+1))
		if err == nil && int64(len(b)) > limit {
			return nil, &source.TooLargeError{What: it.Path, Size: -1, Limit: limit}
		}
	}
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, source.ErrEmpty
	}
	return &source.Raw{Image: b}, nil
}
