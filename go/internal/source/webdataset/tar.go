package webdataset

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/datago-dev/datago/internal/source"
)

// The WebDataset layout: a tar archive whose consecutive members sharing a key (the member's path up
// to the first dot of its base name) form one sample; the rest of the name (the suffix, lowercased)
// says what the member is: "jpg", "txt", "seg.png", ...

const (
	blockSize = 512
	// prealloc: members up to this size are read into an exactly sized buffer at once.
	prealloc = 16 << 20
)

// SplitKey splits a tar member name into its sample key and suffix, as WebDataset does: the key is the
// directory plus the base name up to its first dot, the suffix everything after that dot. A base name
// that starts with a dot (".txt" in "dir/.txt") makes "dir/" the key, provided the last directory has
// no dot itself. ok is false for names that belong to no sample (no dot in the base name, ...).
// The suffix is returned as it is; grouping lowercases it.
func SplitKey(name string) (key, suffix string, ok bool) {
	slash := strings.LastIndexByte(name, '/')
	base := name[slash+1:]
	dot := strings.IndexByte(base, '.')
	switch {
	case dot > 0:
		return name[:slash+1+dot], base[dot+1:], true
	case dot < 0 || slash < 0:
		return "", "", false
	}
	dir := name[strings.LastIndexByte(name[:slash], '/')+1 : slash]
	if strings.IndexByte(dir, '.') >= 0 {
		return "", "", false
	}
	return name[:slash+1], base[1:], true
}

// isMeta reports whether a member is archive metadata that WebDataset ignores: a top-level name
// such as "__index__", or anything under a "__meta__/" directory.
func isMeta(name string) bool {
	first, _, nested := strings.Cut(name, "/")
	if !nested {
		return strings.HasPrefix(name, "__") && strings.HasSuffix(name, "__")
	}
	return len(first) >= 4 && strings.HasPrefix(first, "__") && strings.HasSuffix(first, "__")
}

// Group is one sample as read from a shard: its members in archive order (names are the lowercased
// suffixes). lost is non-empty when the sample cannot be trusted: a corrupt member next to it, a
// member too large, or the shard ending (truncated, or unreadable) while it was being read.
type Group struct {
	key     string
	members []source.Named
	dup     bool // a suffix occurred twice (dupName)
	dupName string
	lost    string
	// start and end delimit the sample in the (decompressed) tar stream: from the first header block
	// of its first member (extended headers included) to the block-aligned end of its last member's
	// data. A planned run reads that range again to fetch the sample (index.go).
	start, end int64
	sizes      []int64 // each member's size (with headersOnly, members carry no data)
	offsets    []int64 // each member's data offset in the stream
}

func (g *Group) member(suffix string) *source.Named {
	for i := range g.members {
		if g.members[i].Name == suffix {
			return &g.members[i]
		}
	}
	return nil
}

// streamEnd says how a shard's tar stream ended.
type streamEnd int

const (
	endClean     streamEnd = iota // end of archive
	endTruncated                  // the data stopped in the middle of a member or header
	endFailed                     // the byte source failed for good, or the compressed stream is corrupt
	endStopped                    // the consumer stopped
)

// streamError marks an error of the byte source (after its retries) or of the decompressor: reading
// cannot go on, as opposed to a corrupt tar header, after which the walker resynchronises.
type streamError struct{ err error }

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// streamErrors wraps every error of r but io.EOF and io.ErrUnexpectedEOF in a *streamError.
type streamErrors struct{ r io.Reader }

func (s streamErrors) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
		var se *streamError
		if !errors.As(err, &se) {
			err = &streamError{err}
		}
	}
	return n, err
}

// counter counts the bytes read through it: the offset in the tar stream.
type counter struct {
	r io.Reader
	n int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// Seek lets the tar reader skip member data it is not asked for by seeking, when the stream is a file
// read from its start (the index of a local shard reads headers only); otherwise it fails, and the tar
// reader reads the data to skip it.
func (c *counter) Seek(off int64, whence int) (int64, error) {
	s, ok := c.r.(io.Seeker)
	if !ok || whence != io.SeekCurrent {
		return -1, errors.New("not seekable")
	}
	pos, err := s.Seek(off, whence)
	if err == nil {
		c.n = pos
	}
	return pos, err
}

// blockEnd rounds a stream offset up to the next tar block boundary.
func blockEnd(n int64) int64 { return (n + blockSize - 1) / blockSize * blockSize }

// walk reads a tar stream and calls fn with every group, in archive order, including the groups
// that are lost (Group.lost set) so that the caller can count them; fn returns false to stop.
// A corrupt header taints the sample being read and the first sample after the point where a valid
// header is found again (either may own the corrupt member), and reading continues from there.
// It returns how the stream ended and, unless it ended cleanly, why.
func walk(r io.Reader, maxMember int64, fn func(*Group) bool) (streamEnd, error) {
	return walkTar(r, maxMember, false, fn)
}

// walkTar is walk; with headersOnly the members' data is not read (their sizes are in Group.sizes),
// and skipped by seeking when r is a file read from its start.
func walkTar(r io.Reader, maxMember int64, headersOnly bool, fn func(*Group) bool) (streamEnd, error) {
	cr := &counter{r: r}
	tr := tar.NewReader(cr)
	var next int64 // where the next entry's header blocks start
	var cur *Group
	taintNext := "" // set by a corruption: the next group to start is suspect too
	emit := func() bool {
		if cur == nil {
			return true
		}
		g := cur
		cur = nil
		return fn(g)
	}
	// endWith reports the group being read as lost (the stream broke inside it) and returns.
	endWith := func(end streamEnd, err error) (streamEnd, error) {
		if cur != nil {
			cur.lost = fmt.Sprintf("the shard ended while this sample was read: %v", err)
			if !emit() {
				return endStopped, nil
			}
		}
		return end, err
	}
	// afterCorruption skips to the next valid header; when none follows, the walk ends there (nil
	// reader): failed on a stream error, cleanly at the end of the data.
	afterCorruption := func() (*tar.Reader, streamEnd, error) {
		next, err := resync(cr)
		if err == nil {
			return next, 0, nil
		}
		var se *streamError
		if errors.As(err, &se) {
			end, err := endWith(endFailed, se.err)
			return nil, end, err
		}
		if !emit() {
			return nil, endStopped, nil
		}
		return nil, endClean, nil
	}
	for {
		entryStart := next
		hdr, err := tr.Next()
		dataStart := cr.n
		if err == nil {
			next = blockEnd(dataStart + hdr.Size)
		}
		if err != nil {
			var se *streamError
			switch {
			case err == io.EOF:
				if !emit() {
					return endStopped, nil
				}
				return endClean, nil
			case errors.As(err, &se):
				return endWith(endFailed, se.err)
			case errors.Is(err, io.ErrUnexpectedEOF):
				return endWith(endTruncated, errors.New("truncated tar data"))
			}
			// A corrupt header (or one the tar reader rejects): skip to the next valid header.
			at := cr.n
			if cur != nil {
				cur.lost = fmt.Sprintf("corrupt tar data near byte %d: %v", at, err)
			}
			taintNext = fmt.Sprintf("corrupt tar data near byte %d (before this sample): %v", at, err)
			resumed, end, err := afterCorruption()
			if resumed == nil {
				return end, err
			}
			tr, next = resumed, cr.n-blockSize // resync consumed the valid header block
			continue
		}
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeCont, tar.TypeGNUSparse:
		default:
			continue // directories, links, devices, ...
		}
		if isMeta(hdr.Name) {
			continue
		}
		key, suffix, ok := SplitKey(hdr.Name)
		if !ok {
			continue
		}
		suffix = strings.ToLower(suffix)
		if cur == nil || cur.key != key {
			if !emit() {
				return endStopped, nil
			}
			cur = &Group{key: key, start: entryStart, lost: taintNext}
		}
		taintNext = ""
		cur.end = next
		if hdr.Size > maxMember {
			if cur.lost == "" {
				cur.lost = fmt.Sprintf("member %q is too large (%d bytes > %d)", hdr.Name, hdr.Size, maxMember)
			}
			continue // Next skips its data
		}
		var data []byte
		if !headersOnly {
			data, err = readMember(tr, hdr.Size)
		}
		if err != nil {
			var se *streamError
			if errors.As(err, &se) {
				return endWith(endFailed, se.err)
			}
			if errors.Is(err, io.ErrUnexpectedEOF) || err == io.EOF {
				return endWith(endTruncated, errors.New("truncated tar data"))
			}
			// The tar reader failed inside the member's data (a malformed sparse map, ...): resynchronise
			// at the next block boundary, as for a corrupt header.
			cur.lost = fmt.Sprintf("corrupt tar member %q: %v", hdr.Name, err)
			resumed, end, err := afterCorruption()
			if resumed == nil {
				return end, err
			}
			tr, next = resumed, cr.n-blockSize
			continue
		}
		if cur.member(suffix) != nil {
			if !cur.dup {
				cur.dup, cur.dupName = true, suffix
			}
			continue
		}
		cur.members = append(cur.members, source.Named{Name: suffix, Data: data})
		cur.sizes = append(cur.sizes, hdr.Size)
		cur.offsets = append(cur.offsets, dataStart)
	}
}

// readMember reads the current member's size bytes. Small members get an exactly sized buffer; large
// ones grow as their data arrives, so a lying size field costs no memory.
func readMember(r io.Reader, size int64) ([]byte, error) {
	if size <= prealloc {
		buf := make([]byte, size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	var b bytes.Buffer
	b.Grow(prealloc)
	n, err := io.Copy(&b, r)
	if err != nil {
		return nil, err
	}
	if n < size {
		return nil, io.ErrUnexpectedEOF
	}
	return b.Bytes(), nil
}

// resync skips to the next block boundary of the stream, then block by block to the next block that
// is a valid tar header, and returns a tar reader starting with it. It returns io.EOF when the stream
// ends first, or the stream's error.
func resync(cr *counter) (*tar.Reader, error) {
	if rem := cr.n % blockSize; rem != 0 {
		if _, err := io.CopyN(io.Discard, cr, blockSize-rem); err != nil {
			return nil, eofOr(err)
		}
	}
	blk := make([]byte, blockSize)
	for {
		if _, err := io.ReadFull(cr, blk); err != nil {
			return nil, eofOr(err)
		}
		if validHeader(blk) {
			return tar.NewReader(io.MultiReader(bytes.NewReader(blk), cr)), nil
		}
	}
}

func eofOr(err error) error {
	var se *streamError
	if errors.As(err, &se) {
		return err
	}
	return io.EOF
}

// validHeader reports whether blk is a tar header block with a correct checksum (the sum of its bytes
// with the checksum field counted as spaces, unsigned or signed as old tars did).
func validHeader(blk []byte) bool {
	field := strings.Trim(string(blk[148:156]), " \x00")
	want, err := strconv.ParseInt(field, 8, 64)
	if err != nil || field == "" {
		return false
	}
	var unsigned, signed int64
	for i, c := range blk {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return want == unsigned || want == signed
}
