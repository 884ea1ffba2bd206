package webdataset

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/storage"
)

// A planned run (equal_steps, bucket_per_step) needs every rank's samples before reading them: the
// catalog indexes every shard's tar once, grouping members into samples with walk's rule, and keeps
// each sample's byte range; Fetch then reads that range again and groups it the same way. A local
// shard's index reads the headers only, seeking over the data; a remote one is streamed once.

// entry is where one sample of the catalog lies.
type entry struct {
	shard      string
	key        string
	start, end int64 // the sample's byte range in the shard
	image      int64 // the image member's data offset (Head)
	imageSize  int64
	version    string // an object-store shard's version when indexed: later reads are pinned to it
}

// Catalog indexes every shard and lists every sample, sorted by id (shard + "#" + key, what a planned
// run dispatches by). Samples that cannot be served whatever the rank (lost, without an image, with a
// duplicate member) are reported through skip and left out; so is a shard that cannot be read. A
// gzip-compressed shard is a ConfigError on equal_steps: its samples cannot be read by offset.
func (w *Source) Catalog(ctx context.Context, skip func(string, string, error)) ([]source.Item, []string, error) {
	var items []source.Item
	var firstErr error
	for _, shard := range w.cfg.Shards {
		n, err := w.indexShard(ctx, shard, func(it source.Item) { items = append(items, it) }, skip)
		var ce *confread.Error
		if errors.As(err, &ce) {
			return nil, nil, err
		}
		if err != nil && n == 0 && firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
	}
	if len(items) == 0 && firstErr != nil {
		return nil, nil, fmt.Errorf("source_config.url: no shard could be indexed: %w", firstErr)
	}
	sort.Slice(items, func(i, j int) bool { return items[i].ID < items[j].ID })
	keys := make([]string, 0, len(items))
	out := items[:0]
	for _, it := range items {
		if len(out) > 0 && out[len(out)-1].ID == it.ID {
			skip(it.ID, source.ReasonDuplicateMember, errors.New("the key occurs twice in the shard (not consecutive members)"))
			continue
		}
		out = append(out, it)
		keys = append(keys, it.ID)
	}
	return out, keys, nil
}

// Topology is source_config's rank and world_size.
func (w *Source) Topology() (int, int) { return w.cfg.Rank, w.cfg.WorldSize }

// Shuffled is shuffle and seed: a planned run's epoch order is the catalog's seeded shuffle.
func (w *Source) Shuffled() (bool, int64) { return w.cfg.Shuffle, w.cfg.Seed }

// indexShard sends the catalog items of one shard and returns how many it found; a shard that cannot
// be read is reported (shard_error) and its error returned.
func (w *Source) indexShard(ctx context.Context, shard string, add func(source.Item), skip func(string, string, error)) (int, error) {
	r, version, closeFn, err := w.indexReader(ctx, shard)
	if err != nil {
		var ce *confread.Error
		if !errors.As(err, &ce) {
			skip(shard, source.ReasonShardError, err)
		}
		return 0, err
	}
	defer closeFn()
	n := 0
	end, err := walkTar(r, w.maxMember, true, func(g *Group) bool {
		id := shard + "#" + g.key
		if g.lost != "" {
			skip(id, source.ReasonLost, errors.New(g.lost))
			return ctx.Err() == nil
		}
		e, reason, err := w.indexEntry(shard, g)
		if err != nil {
			skip(id, reason, err)
			return ctx.Err() == nil
		}
		e.version = version
		n++
		add(source.Item{ID: id, Path: shard, Ref: e})
		return ctx.Err() == nil
	})
	switch end {
	case endTruncated:
		err = fmt.Errorf("truncated shard, after %d samples", n)
	case endFailed:
		err = fmt.Errorf("%w (after %d samples of this shard)", err, n)
	default:
		err = nil
	}
	if err != nil {
		skip(shard, source.ReasonShardError, err)
	}
	return n, err
}

// indexReader opens a shard for its index: a local file as it is (seekable), a remote one as a
// buffered stream, an object-store one pinned to the version its listing gives (returned). A
// gzip-compressed shard is refused.
func (w *Source) indexReader(ctx context.Context, shard string) (io.Reader, string, func(), error) {
	path, isHTTP, err := shardLocation(shard)
	if err != nil {
		return nil, "", nil, err
	}
	var r io.Reader
	var closeFn func()
	var magic []byte
	version := ""
	switch {
	case !isHTTP:
		f, err := os.Open(path)
		if err != nil {
			return nil, "", nil, err
		}
		magic = make([]byte, 2)
		if k, _ := f.ReadAt(magic, 0); k < 2 {
			magic = magic[:k]
		}
		r, closeFn = seekErrors{f}, func() { f.Close() }
	default:
		var rc io.ReadCloser
		if storage.Remote(shard) {
			// Without a version (a listing that does not give it), the reads are not pinned.
			if o, ok, err := w.store.First(ctx, shard); err == nil && ok && o.URL == shard {
				version = o.Version
			}
			rc = w.store.Open(ctx, shard, version)
		} else if rc, err = w.openShard(ctx, shard); err != nil {
			return nil, "", nil, err
		}
		br := bufio.NewReaderSize(streamErrors{rc}, 256<<10)
		magic, _ = br.Peek(2)
		r, closeFn = br, func() { rc.Close() }
	}
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		closeFn()
		return nil, "", nil, &confread.Error{Key: "equal_steps", Msg: fmt.Sprintf("shard %s is gzip-compressed: a planned run (equal_steps, bucket_per_step) reads each sample by its byte range in the tar, which a compressed stream cannot seek to; use uncompressed .tar shards", shard)}
	}
	return r, version, closeFn, nil
}

// seekErrors is streamErrors for a local file, keeping it seekable (the index skips member data).
type seekErrors struct{ f *os.File }

func (s seekErrors) Read(p []byte) (int, error) { return streamErrors{s.f}.Read(p) }

func (s seekErrors) Seek(off int64, whence int) (int64, error) { return s.f.Seek(off, whence) }

// indexEntry checks, from the member names and sizes, what item checks from the data (a duplicate
// suffix, the image member, an empty image), so that the catalog only lists samples that can be
// served; the metadata members are only parsed when the sample is fetched.
func (w *Source) indexEntry(shard string, g *Group) (*entry, string, error) {
	if g.dup {
		return nil, source.ReasonDuplicateMember, fmt.Errorf("two members with suffix %q", g.dupName)
	}
	keys := w.cfg.ImageKeys
	if w.cfg.ReferenceImage != "" {
		keys = []string{w.cfg.ReferenceImage}
	}
	for _, k := range keys {
		for i, m := range g.members {
			if m.Name != k {
				continue
			}
			if g.sizes[i] == 0 {
				return nil, source.ReasonEmpty, fmt.Errorf("member %q is empty", k)
			}
			return &entry{shard: shard, key: g.key, start: g.start, end: g.end, image: g.offsets[i], imageSize: g.sizes[i]}, "", nil
		}
	}
	// item says why, with the same message as the streaming path.
	_, reason, err := w.item(shard, shard+"#"+g.key, g)
	if err == nil {
		err = errors.New("no image member")
	}
	return nil, reason, err
}

// readRange reads n bytes of a shard from byte off: a local file by offset, a remote one with a ranged
// read.
func (w *Source) readRange(ctx context.Context, shard, version string, off, n int64) ([]byte, error) {
	path, isHTTP, err := shardLocation(shard)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, n)
	if !isHTTP {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if _, err := f.ReadAt(buf, off); err != nil {
			if err == io.EOF {
				err = fmt.Errorf("%s: shorter than its index (it changed since the catalog)", shard)
			}
			return nil, err
		}
		return buf, nil
	}
	var rc io.ReadCloser
	if storage.Remote(shard) {
		rc = w.store.OpenAt(ctx, shard, version, off)
	} else {
		s := newHTTPStream(ctx, w.client, shard, w.cfg.Timeout, w.cfg.MaxRetries, w.cfg.RetryBackoff)
		s.token, s.off, s.end = w.cfg.AuthToken, off, off+n
		rc = s
	}
	defer rc.Close()
	if _, err := io.ReadFull(rc, buf); err != nil {
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("%s: shorter than its index (it changed since the catalog)", shard)
		}
		return nil, err
	}
	return buf, nil
}

// fetchEntry reads a catalog sample's byte range and groups it as the streaming path does.
func (w *Source) fetchEntry(ctx context.Context, it source.Item, e *entry) (*source.Raw, error) {
	data, err := w.readRange(ctx, e.shard, e.version, e.start, e.end-e.start)
	if err != nil {
		return nil, err
	}
	var found *Group
	end, werr := walk(bytes.NewReader(data), w.maxMember, func(g *Group) bool {
		if g.key == e.key {
			found = g
			return false
		}
		return true
	})
	switch {
	case found == nil && end == endClean:
		return nil, &fetchError{source.ReasonLost, fmt.Errorf("no sample %q at bytes %d-%d of the shard (it changed since the catalog)", e.key, e.start, e.end)}
	case found == nil:
		return nil, &fetchError{source.ReasonLost, fmt.Errorf("bytes %d-%d of the shard: %v", e.start, e.end, werr)}
	case found.lost != "":
		return nil, &fetchError{source.ReasonLost, errors.New(found.lost)}
	}
	got, reason, err := w.item(e.shard, it.ID, found)
	if err != nil {
		return nil, &fetchError{reason, err}
	}
	return got.Raw, nil
}

// Head reads the first n bytes of a catalog sample's image member (the header pass).
func (w *Source) Head(ctx context.Context, it source.Item, n int) ([]byte, error) {
	e, ok := it.Ref.(*entry)
	if !ok {
		return nil, errors.New("webdataset: not a catalog item")
	}
	return w.readRange(ctx, e.shard, e.version, e.image, min(int64(n), e.imageSize))
}

// fetchError is a fetch failure with the skip reason the streaming path gives the same sample.
type fetchError struct {
	reason string
	err    error
}

func (e *fetchError) Error() string      { return e.err.Error() }
func (e *fetchError) Unwrap() error      { return e.err }
func (e *fetchError) SkipReason() string { return e.reason }
