// Package imaging decodes encoded images (JPEG, PNG and WebP through libjpeg/libpng or libvips,
// whose dg_open refuses every other format so no other libvips loader sees untrusted bytes; GIF
// and BMP through Go's decoders, handed on as PNG) into 8-bit sRGB or greyscale pixels, optionally cropped and resized to an
// aspect-ratio bucket, and hands the result over in C memory so it can cross the C ABI without
// a copy. It is the only package of datago that calls libvips, libjpeg and libpng.
package imaging

/*
#cgo pkg-config: vips
#cgo CFLAGS: -O3
#cgo LDFLAGS: -lm -ljpeg -lpng16 -lz
#include <stdlib.h>
#include "vips.h"
*/
import "C"

import (
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/datago-dev/datago/internal/bucket"
)

var (
	initOnce sync.Once
	initErr  error
)

// Init initialises libvips once per process; safe to call many times and concurrently.
// It turns the libvips operation cache off (vips_cache_set_max(0)) and sets vips_concurrency_set(1):
// parallelism comes from the caller's goroutines, one libvips thread per image.
func Init() error {
	initOnce.Do(func() {
		if C.dg_init() != 0 {
			initErr = fmt.Errorf("imaging: cannot initialise libvips: %s", vipsError())
		}
		// Warnings of images decoded before the first failure are no one's message.
		C.dg_clear_error()
	})
	return initErr
}

// vipsError fetches and clears libvips' pending error text ("" if none). The buffer is shared by
// the whole process: only callers that hold errGate exclusively get their own call's text.
func vipsError() string {
	s := C.dg_take_error()
	if s == nil {
		return ""
	}
	defer C.dg_free_error(s)
	return oneLine(C.GoString(s))
}

// oneLine joins libvips' newline-separated messages: one line reads better inside a Go error.
func oneLine(msg string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(msg), "\n", "; ")), " ")
}

type header struct {
	width, height int // after EXIF orientation
	orientation   int
	loader        int
	direct        bool // the direct decoder read it and can decode it
}

// readHeader parses the header only, with the direct decoder when allowed and able (with
// native, for colour images only), else libvips; neither holds data beyond the call. See
// callError for capture.
func readHeader(data []byte, direct, native, capture bool) (header, error) {
	var h C.dg_header
	if C.dg_read_header(unsafe.Pointer(&data[0]), C.size_t(len(data)), cBool(direct), cBool(native), &h) != 0 {
		return header{}, callError(data, &h.err, &h.codec_err, capture)
	}
	return header{
		width:       int(h.width),
		height:      int(h.height),
		orientation: int(h.orientation),
		loader:      int(h.loader),
		direct:      h.direct != 0,
	}, nil
}

const (
	loaderOther = int(C.DG_LOADER_OTHER)
	loaderJPEG  = int(C.DG_LOADER_JPEG)
	loaderWebP  = int(C.DG_LOADER_WEBP)
)

type plan struct {
	probe               bool  // no readHeader call: the C side reads loader, orientation and size
	direct              bool  // try the direct decoder first
	maxPixels           int64 // with probe
	loader, orientation int
	shrink              int
	fullW, fullH        int // JPEG with shrink > 1: the oriented size before it
	resize              bool
	crop                bucket.Plan
	mask, preEncode     bool
	format              Format
	quality             int
	background          [3]uint8
	keepAlpha           bool
	native, alphaMask   bool
	webpLibvips         bool // tests (Options.libvipsOnly)
}

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

// decode runs the whole decode-to-output pipeline in one C call, so no object that references
// data (Go memory) survives it. With pl.probe it also returns the oriented size and whether the
// image was refused for its pixel count.
func decode(data []byte, pl plan, capture bool) (im *Image, width, height int, tooLarge bool, err error) {
	p := C.dg_params{
		probe:         cBool(pl.probe),
		direct:        cBool(pl.direct),
		max_pixels:    C.longlong(pl.maxPixels),
		loader:        C.int(pl.loader),
		orientation:   C.int(pl.orientation),
		shrink:        C.int(pl.shrink),
		full_width:    C.int(pl.fullW),
		full_height:   C.int(pl.fullH),
		resize:        cBool(pl.resize),
		cover_width:   C.int(pl.crop.CoverW),
		cover_height:  C.int(pl.crop.CoverH),
		crop_left:     C.int(pl.crop.Left),
		crop_top:      C.int(pl.crop.Top),
		out_width:     C.int(pl.crop.OutW),
		out_height:    C.int(pl.crop.OutH),
		mask:          cBool(pl.mask),
		pre_encode:    cBool(pl.preEncode),
		encode_format: C.int(pl.format),
		quality:       C.int(pl.quality),
		background:    [3]C.double{C.double(pl.background[0]), C.double(pl.background[1]), C.double(pl.background[2])},
		keep_alpha:    cBool(pl.keepAlpha),
		native:        cBool(pl.native),
		alpha_mask:    cBool(pl.alphaMask),
		webp_libvips:  cBool(pl.webpLibvips),
	}
	var out C.dg_output
	status := C.dg_process(unsafe.Pointer(&data[0]), C.size_t(len(data)), &p, &out)
	width, height = int(out.orig_width), int(out.orig_height)
	if out.too_large != 0 {
		return nil, width, height, true, nil
	}
	if status != 0 {
		return nil, width, height, false, callError(data, &out.err, &out.codec_err, capture)
	}
	im = &Image{
		Data:     out.data,
		Len:      int(out.len),
		Width:    int(out.width),
		Height:   int(out.height),
		Channels: int(out.bands),
		BitDepth: int(out.bit_depth),
		Encoded:  out.encoded != 0,
		direct:   out.direct != 0,
	}
	if out.mask_data != nil {
		im.Alpha = &Image{Data: out.mask_data, Len: int(out.mask_len), Width: im.Width, Height: im.Height, BitDepth: 8, Encoded: im.Encoded}
		if !im.Encoded {
			im.Alpha.Channels = 1
		}
	}
	return im, width, height, false, nil
}

// Free releases Data (C free) and zeroes the struct; safe to call twice.
func (im *Image) Free() {
	if im == nil {
		return
	}
	if im.Data != nil {
		C.free(im.Data)
	}
	im.Alpha.Free()
	*im = Image{}
}

// Bytes returns a Go slice aliasing Data (for tests / Go consumers; valid until Free).
func (im *Image) Bytes() []byte {
	if im == nil || im.Data == nil || im.Len == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(im.Data), im.Len)
}

// vipsStats reports libvips' live allocations and objects, for leak tests.
func vipsStats() (mem int64, allocs, objects int) {
	return int64(C.dg_tracked_mem()), int(C.dg_tracked_allocs()), int(C.dg_object_count())
}

// vipsEncode encodes 8-bit pixels with the libvips saver selected by suffix (".webp",
// ".jpg[Q=90]", ...). With a profile ("cmyk", "p3"), the sRGB pixels are first converted to
// that built-in ICC profile, which is embedded only when keepProfile. Tests use it to make
// inputs the Go standard library cannot write.
func vipsEncode(pix []byte, width, height, bands int, suffix, profile string, keepProfile bool) ([]byte, error) {
	if err := Init(); err != nil {
		return nil, err
	}
	if len(pix) != width*height*bands || len(pix) == 0 {
		return nil, fmt.Errorf("imaging: %d bytes for %dx%dx%d pixels", len(pix), width, height, bands)
	}
	cSuffix := C.CString(suffix)
	defer C.free(unsafe.Pointer(cSuffix))
	var cProfile *C.char
	if profile != "" {
		cProfile = C.CString(profile)
		defer C.free(unsafe.Pointer(cProfile))
	}
	var buf unsafe.Pointer
	var n C.size_t
	if C.dg_test_encode(unsafe.Pointer(&pix[0]), C.int(width), C.int(height), C.int(bands), cSuffix,
		cProfile, cBool(keepProfile), &buf, &n) != 0 {
		return nil, fmt.Errorf("imaging: cannot encode %s: %s", suffix, vipsError())
	}
	defer C.free(buf)
	return C.GoBytes(buf, C.int(n)), nil
}

// alloc returns an Image of n bytes of C memory, to be released with Free.
func alloc(n int) (*Image, error) {
	p := C.malloc(C.size_t(max(n, 1)))
	if p == nil {
		return nil, fmt.Errorf("imaging: out of memory for %d bytes", n)
	}
	return &Image{Data: p, Len: n}, nil
}
