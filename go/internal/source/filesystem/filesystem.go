// Package filesystem is the "filesystem" source: the images under a directory tree, listed as a
// stream in directory order or, with random_sampling, all at once and shuffled per epoch. A
// root_path that is an object-store URL (s3://bucket/prefix) is a prefix, listed through the
// storage layer in key order.
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

	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/storage"
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
	SeedGiven      bool           // source_config.seed was set
	Storage        storage.Config // source_config.storage, for a remote root_path
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
	store    *storage.Store // nil for a local root_path
}

// New returns the source of cfg; maxFileBytes (> 0) bounds the files it reads. Nothing is
// contacted: a remote root_path is first listed by List or Check.
func New(cfg Config, maxFileBytes int64) *Source {
	f := &Source{cfg: cfg, maxBytes: maxFileBytes}
	if storage.Remote(cfg.RootPath) {
		f.store = storage.New(cfg.Storage, storage.DefaultPolicy)
	}
	return f
}

// Open is New with the pipeline's limit and, for a remote root_path, the early check of the
// credentials, the bucket and the prefix.
func (c Config) Open(common source.Common) (source.Source, error) {
	p := storage.DefaultPolicy
	p.Conns = max(p.Conns, common.Fetchers)
	f := New(c, common.MaxFileBytes)
	if f.store != nil {
		f.store = storage.New(c.Storage, p)
		if err := f.Check(context.Background()); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// prefix is the remote root_path as a key prefix: a directory, so it ends with "/".
func (f *Source) prefix() string {
	p := f.cfg.RootPath
	if !strings.HasSuffix(p, "/") && strings.Count(p, "/") > 2 {
		p += "/"
	}
	return p
}

// Check lists the first object of a remote root_path: wrong credentials, a missing bucket or an
// empty prefix fail here, with the provider's code and message, rather than as an empty stream. A
// refusal is a *confread.Error naming root_path (a configuration mistake); other failures are not.
func (f *Source) Check(ctx context.Context) error {
	if f.store == nil {
		return nil
	}
	_, ok, err := f.store.First(ctx, f.prefix())
	switch {
	case err != nil && storage.Refusal(err):
		return &confread.Error{Key: "source_config.root_path", Msg: err.Error()}
	case err != nil:
		return fmt.Errorf("source_config.root_path: %w", err)
	case !ok:
		return &confread.Error{Key: "source_config.root_path", Msg: fmt.Sprintf("no object under %s", f.prefix())}
	}
	return nil
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
	if err != nil {
		return nil, nil, err
	}
	keys := make([]string, len(all))
	for i, it := range all {
		if o, ok := it.Ref.(storage.Object); ok {
			// The key relative to the prefix, as rank dispatch hashes it: a tree copied from disk to a
			// bucket gets the same plan.
			keys[i] = o.Key
			continue
		}
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
	if f.store != nil {
		return f.walkRemote(ctx, all, emit)
	}
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

// walkRemote streams the objects under the remote prefix in key order, one page at a time; ranks
// hash the key relative to the prefix, as local files hash their path relative to the root, so a
// tree copied to a bucket splits the same way.
func (f *Source) walkRemote(ctx context.Context, all bool, emit func(source.Item) bool) error {
	err := f.store.List(ctx, f.prefix(), func(o storage.Object) bool {
		if !isImageName(o.Key) || (!all && source.Rank(o.Key, f.cfg.WorldSize) != f.cfg.Rank) {
			return true
		}
		return emit(source.Item{ID: o.URL, Path: o.URL, Ref: o})
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("source_config.root_path: %w", err)
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

// Head reads up to the first n bytes of it's file, or of its object (a read from byte 0 closed after n
// bytes, pinned to the listed version).
func (f *Source) Head(ctx context.Context, it source.Item, n int) ([]byte, error) {
	if o, ok := it.Ref.(storage.Object); ok {
		if f.store == nil {
			return nil, fmt.Errorf("%s: not a remote filesystem source", o.URL)
		}
		if o.Size >= 0 && o.Size < int64(n) {
			n = int(o.Size)
		}
		rc := f.store.Open(ctx, o.URL, o.Version)
		defer rc.Close()
		b := make([]byte, n)
		k, err := io.ReadFull(rc, b)
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = nil
		}
		return b[:k], err
	}
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

// Fetch reads the file or object of it, refusing one larger than max_file_bytes before reading it.
func (f *Source) Fetch(ctx context.Context, it source.Item) (*source.Raw, error) {
	if o, ok := it.Ref.(storage.Object); ok {
		return f.fetchRemote(ctx, o)
	}
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

// fetchRemote reads one object, checking its listed size against max_file_bytes first.
func (f *Source) fetchRemote(ctx context.Context, o storage.Object) (*source.Raw, error) {
	if o.Size > f.maxBytes {
		return nil, &source.TooLargeError{What: o.URL, Size: o.Size, Limit: f.maxBytes}
	}
	if o.Size == 0 {
		return nil, source.ErrEmpty
	}
	if f.store == nil {
		return nil, fmt.Errorf("%s: not a remote filesystem source", o.URL)
	}
	b, err := f.store.ReadAll(ctx, o, f.maxBytes)
	if err != nil {
		return nil, err
	}
	return &source.Raw{Image: b}, nil
}
