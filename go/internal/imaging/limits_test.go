package imaging

import (
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/bucket"
	"github.com/datago-dev/datago/internal/testimg"
)

// hostileSlack is what a call may add to the peak resident set beyond the bound on the input
// (allocator and Go runtime noise included): the documented bound is a few times the file's
// size, plus the decoded image (which max_pixels limits), plus 16 MiB for one ICC profile.
const hostileSlack = 32 << 20

func hostileBound(n int) int64 { return hostileSlack + 4*int64(n) }

type hostileCase struct {
	name    string
	data    []byte
	decoded bool           // delivered (the oversized part was metadata datago drops)
	msg     *regexp.Regexp // else the message
}

func hostileCases(t testing.TB) []hostileCase {
	jpg := testimg.JPEG(t, nrgbaImage(64, 64, gradient(64, 64)), 90)
	var cases []hostileCase
	for _, typ := range []string{"tEXt", "zTXt", "iTXt", "pCAL", "sCAL", "sPLT", "iCCP", "eXIf", "prIv"} {
		// Before the pixels nothing can be decoded: skipped, naming the chunk and the cause.
		cases = append(cases, hostileCase{"png huge " + typ, pngHugeChunk(typ, false), false,
			regexp.MustCompile(`^cannot decode image: png: ` + typ + ` chunk at byte 33 declares 1073741823 bytes but only 16 follow \(truncated or corrupt\)$`)})
		// After the pixels the cut-off chunk is dropped with the rest: decoded as a PNG
		// without IEND is, as before.
		cases = append(cases, hostileCase{"png pixels then huge " + typ, pngHugeChunk(typ, true), true, nil})
	}
	return append(cases,
		// Present and well-formed, but inflating to 800 MB of text: dropped, image decoded.
		hostileCase{"png zTXt bomb", pngTextBomb("zTXt", 20, 40<<20), true, nil},
		hostileCase{"png iTXt bomb", pngTextBomb("iTXt", 20, 40<<20), true, nil},
		// A profile declared at 1 GiB with a 132-byte stream: dropped, as libpng drops a
		// profile it cannot read; pixels decoded as sRGB.
		hostileCase{"png iCCP bomb", pngICCBomb(1 << 30), true, nil},
		hostileCase{"jpeg huge APP1 EXIF", jpegHugeSegment(jpg, 0xE1, "Exif\x00\x00MM"), false,
			regexp.MustCompile(`^cannot decode image: jpeg: marker 0xFFE1 segment at byte 2 declares 65535 bytes but only 10 follow \(truncated\)$`)},
		hostileCase{"jpeg huge APP2 ICC", jpegHugeSegment(jpg, 0xE2, "ICC_PROFILE\x00\x01\x01"), false,
			regexp.MustCompile(`^cannot decode image: jpeg: marker 0xFFE2 segment at byte 2 declares 65535 bytes`)},
		hostileCase{"webp huge ICCP", webpHugeChunk("ICCP"), false,
			regexp.MustCompile(`^cannot decode image: webp: ICCP chunk at byte 30 declares 1073741823 bytes but only 16 follow`)},
		hostileCase{"webp huge EXIF", webpHugeChunk("EXIF"), false,
			regexp.MustCompile(`^cannot decode image: webp: EXIF chunk at byte 30 declares 1073741823 bytes`)},
	)
}

// Every class of file that declares more than it holds is skipped (or decoded without the
// metadata) fast and without allocating what it declares, on every path.
func TestHostileFilesAreBounded(t *testing.T) {
	opts := []*Options{
		{MaxPixels: 1 << 22},
		{MaxPixels: 1 << 22, libvipsOnly: true},
		{CropAndResize: true, Target: &bucket.Bucket{Width: 16, Height: 16}},
		{CropAndResize: true, Target: &bucket.Bucket{Width: 16, Height: 16}, libvipsOnly: true},
		{CropAndResize: true, Target: &bucket.Bucket{Width: 16, Height: 16}, Mask: true},
	}
	for _, c := range hostileCases(t) {
		for _, o := range opts {
			var im *Image
			var err error
			start := time.Now()
			grew, measured := peakRSS(func() { im, err = Process(c.data, o) })
			took := time.Since(start)
			switch {
			case c.decoded && err != nil:
				t.Errorf("%s (%+v): %v, want decoded", c.name, o, err)
			case !c.decoded && err == nil:
				t.Errorf("%s (%+v): decoded, want an error", c.name, o)
			case !c.decoded && (!errors.Is(err, ErrDecode) || !c.msg.MatchString(err.Error())):
				t.Errorf("%s (%+v): %q, want ErrDecode matching %v", c.name, o, err, c.msg)
			}
			im.Free()
			if measured && grew > hostileBound(len(c.data)) {
				t.Errorf("%s (%+v): peak RSS grew by %d MiB, bound %d MiB", c.name, o, grew>>20, hostileBound(len(c.data))>>20)
			}
			// Before: 0.6-5 s each. Generous for -race and a loaded machine.
			if took > 500*time.Millisecond {
				t.Errorf("%s (%+v): took %v", c.name, o, took)
			}
		}
	}
}

// The copy the decoders get keeps every pixel: a PNG with text, a palette-free iCCP profile and
// unknown chunks decodes as the same PNG without them.
func TestPrescanKeepsPixels(t *testing.T) {
	const w, h = 40, 30
	rows := rgbPixels(w, h, gradient(w, h))
	plain := rawPNG(t, w, h, 2, 8, rows)
	noisy := rawPNG(t, w, h, 2, 8, rows,
		[]byte("tEXt"), []byte("Software\x00test"),
		[]byte("zTXt"), append([]byte("Comment\x00\x00"), deflate(make([]byte, 1<<20))...),
		[]byte("prIv"), []byte("private"),
		[]byte("tIME"), []byte{7, 0xE9, 1, 2, 3, 4, 5})
	a := mustProcess(t, plain, nil)
	b := mustProcess(t, noisy, nil)
	checkShape(t, b, w, h, 3)
	if string(a.Bytes()) != string(b.Bytes()) {
		t.Fatal("dropping metadata chunks changed the pixels")
	}
}
