package imaging

import (
	"errors"
	"fmt"
	"unsafe"

	"github.com/datago-dev/datago/internal/bucket"
)

// Options select what Process does to an image.
type Options struct {
	CropAndResize bool
	Buckets       []bucket.Bucket // candidate buckets when CropAndResize and Target is nil
	Target        *bucket.Bucket  // when non-nil (and CropAndResize): force this output size (used to align masks/extra images with a main image)
	Mask          bool            // output one channel (8-bit greyscale), resized with nearest-neighbour so no new grey levels appear
	PreEncode     bool            // re-encode the processed image in Format
	Format        Format          // with PreEncode; FormatAuto: JPEG when it has 3 channels, PNG otherwise
	Quality       int             // JPEG and WebP quality, 1..100; 0 means DefaultQuality
	Background    *[3]uint8       // what alpha is flattened onto; nil: white
	KeepAlpha     bool            // deliver RGBA (4 channels, alpha opaque when the image has none) instead of flattening; with Native: LA or RGBA for the images that have alpha, nothing added
	Native        bool            // image_to_rgb8 false: the decoded mode (grey stays 1 channel, 16-bit stays 16-bit: BitDepth 16); other colour spaces still become sRGB
	AlphaMask     bool            // flatten as without KeepAlpha, and deliver the alpha (255 without one), after the same resize, in Image.Alpha
	MaxPixels     int64           // >0: an image whose header says width*height > MaxPixels is refused with ErrTooLarge before decoding pixels

	libvipsOnly bool // tests: skip the direct libjpeg/libpng decoders and decode WebP with libvips' loader, which must agree
}

// Image is a processed image in C memory. Data is allocated with malloc and must be released
// with C free() (Free does it). Ownership passes to the caller.
type Image struct {
	Data           unsafe.Pointer
	Len            int
	Width, Height  int
	Channels       int    // 3 (RGB), 4 (RGBA), 1 (mask); with Options.Native also 1 (L), 2 (LA); 0 when Encoded
	BitDepth       int    // 8, or 16 (native 16-bit: Data holds host-order uint16 samples); of the encoded pixels when Encoded
	Encoded        bool   // Data holds JPEG, PNG or WebP bytes (PreEncode)
	Alpha          *Image // with Options.AlphaMask: the alpha as a 1-channel 8-bit image of the same size (PNG when Encoded); owned with the image
	OriginalWidth  int    // size after EXIF orientation, before crop/resize
	OriginalHeight int

	direct bool // decoded by the direct decoder rather than libvips (tests)
}

// Errors returned by Process wrap one of these (test with errors.Is).
var (
	ErrTooLarge = errors.New("image too large")
	ErrDecode   = errors.New("cannot decode image")
	ErrEmpty    = errors.New("empty image data")
)

// Process decodes data (JPEG, PNG or WebP; anything else is a decode error) and delivers
// 8-bit pixels: EXIF orientation applied; RGB (or one grey band with opts.Mask); alpha
// flattened onto white; 16-bit scaled down; CMYK and embedded ICC profiles converted to sRGB.
// opts.Native keeps grey, alpha and 16 bits instead (see Options); opts.AlphaMask also
// delivers the alpha in Image.Alpha.
// With opts.CropAndResize the image is resized to cover the bucket (opts.Target, or the
// closest of opts.Buckets) and centre-cropped to it. A nil opts means no options.
//
// Decoding errors wrap ErrEmpty, ErrDecode or ErrTooLarge (errors.Is works) and carry libvips'
// message; inconsistent options (CropAndResize with neither Buckets nor Target) are reported
// without a sentinel. Process is safe for concurrent use; each call runs on one libvips thread.
func Process(data []byte, opts *Options) (*Image, error) {
	if len(data) == 0 {
		return nil, ErrEmpty
	}
	if opts == nil {
		opts = &Options{}
	}
	if err := Init(); err != nil {
		return nil, err
	}
	if f := goFormat(data); f != "" {
		// GIF and BMP: decoded in Go (gobmp.go), then processed as PNG.
		var err error
		if data, err = transcode(data, f, opts.MaxPixels); err != nil {
			return nil, err
		}
	}
	forkGate.RLock()
	defer forkGate.RUnlock()
	// Before any decoder: declared lengths past the end refused, PNG metadata dropped, so what
	// a decoder allocates is bounded by the input (see prescan.h).
	data, done, err := prescan(data)
	if err != nil {
		return nil, err
	}
	defer done()
	errGate.RLock()
	im, err := process(data, opts, false)
	errGate.RUnlock()
	if !errors.Is(err, errPending) {
		return im, err
	}
	// Failed inside libvips: again, alone, for its own message (see errGate).
	errGate.Lock()
	defer errGate.Unlock()
	clearVipsError()
	return process(data, opts, true)
}

// process is Process after the checks, with capture as in callError.
func process(data []byte, opts *Options, capture bool) (*Image, error) {
	if !opts.CropAndResize {
		// The whole image is delivered: one load reads the header and decodes.
		return probeAndDecode(data, opts, capture)
	}
	h, err := readHeader(data, opts.direct(), opts.Native, capture)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	if h.width <= 0 || h.height <= 0 {
		return nil, fmt.Errorf("%w: image is %dx%d", ErrDecode, h.width, h.height)
	}
	if opts.MaxPixels > 0 && int64(h.width)*int64(h.height) > opts.MaxPixels {
		return nil, fmt.Errorf("%w: %dx%d is %d pixels, more than the limit of %d",
			ErrTooLarge, h.width, h.height, int64(h.width)*int64(h.height), opts.MaxPixels)
	}

	pl := plan{
		direct:      h.direct,
		loader:      h.loader,
		orientation: h.orientation,
		shrink:      1,
		mask:        opts.Mask,
		preEncode:   opts.PreEncode,
		format:      opts.Format,
		quality:     opts.quality(),
		background:  opts.background(),
		keepAlpha:   opts.KeepAlpha,
		native:      opts.Native,
		alphaMask:   opts.AlphaMask && !opts.Mask,
		webpLibvips: opts.libvipsOnly,
	}
	if opts.CropAndResize {
		var b bucket.Bucket
		switch {
		case opts.Target != nil:
			b = *opts.Target
		case len(opts.Buckets) > 0:
			b = bucket.Closest(opts.Buckets, h.width, h.height)
		default:
			return nil, errors.New("imaging: CropAndResize needs Buckets or a Target")
		}
		if b.Width <= 0 || b.Height <= 0 {
			return nil, fmt.Errorf("imaging: invalid bucket %dx%d", b.Width, b.Height)
		}
		pl.resize = true
		pl.crop = bucket.PlanCrop(h.width, h.height, b)
		// Block shrinking averages pixels, which would invent grey levels in a mask.
		if !opts.Mask {
			pl.shrink = shrinkOnLoad(h.loader, h.width, h.height, pl.crop.CoverW, pl.crop.CoverH)
			if h.loader == loaderJPEG {
				// libwebp scales the whole extent; libjpeg drops a partial last block.
				pl.fullW, pl.fullH = h.width, h.height
			}
		}
	}

	im, _, _, _, err := decode(data, pl, capture)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	im.OriginalWidth, im.OriginalHeight = h.width, h.height
	return im, nil
}

// direct says whether the direct decoders may serve opts: they deliver 8-bit RGB only, from
// files without alpha (so an alpha mask is opaque, and native modes keep no alpha there) and,
// with Native, not grey ones (the C side checks). KeepAlpha without Native adds an alpha.
func (o *Options) direct() bool {
	return !o.libvipsOnly && (!o.KeepAlpha || o.Native)
}

// shrinkOnLoad picks the largest decoder-side shrink that still leaves an image of at least
// coverW x coverH, so the final resize only ever reduces (quality) and the decoder does as
// little work as possible. The decoders round sizes up or to nearest, so floor keeps it safe.
func shrinkOnLoad(loader, w, h, coverW, coverH int) int {
	maxShrink := 1
	switch loader {
	case loaderJPEG:
		maxShrink = 8 // libjpeg's DCT scaling: 1/2, 1/4, 1/8
	case loaderWebP:
		maxShrink = 1 << 10 // libwebp scales to any size
	}
	s := 1
	for s*2 <= maxShrink && w/(s*2) >= coverW && h/(s*2) >= coverH {
		s *= 2
	}
	return s
}

func probeAndDecode(data []byte, opts *Options, capture bool) (*Image, error) {
	im, w, h, tooLarge, err := decode(data, plan{
		probe: true, direct: opts.direct(), keepAlpha: opts.KeepAlpha, maxPixels: opts.MaxPixels, shrink: 1, mask: opts.Mask, preEncode: opts.PreEncode,
		format: opts.Format, quality: opts.quality(), background: opts.background(),
		native: opts.Native, alphaMask: opts.AlphaMask && !opts.Mask, webpLibvips: opts.libvipsOnly,
	}, capture)
	switch {
	case tooLarge:
		return nil, fmt.Errorf("%w: %dx%d is %d pixels, more than the limit of %d",
			ErrTooLarge, w, h, int64(w)*int64(h), opts.MaxPixels)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	im.OriginalWidth, im.OriginalHeight = w, h
	return im, nil
}

// Stack copies same-shaped images into one buffer, image after image, and frees them: a batch
// that Python sees as one n x height x width x channels array. The result has the shape of one
// image and Len of all of them.
func Stack(images []*Image) (*Image, error) {
	if len(images) == 0 {
		return nil, errors.New("imaging: nothing to stack")
	}
	first := images[0]
	for _, im := range images {
		if im.Encoded || im.Width != first.Width || im.Height != first.Height || im.Channels != first.Channels || im.BitDepth != first.BitDepth {
			return nil, fmt.Errorf("imaging: cannot stack a %dx%dx%d %d-bit image on %dx%dx%d %d-bit ones",
				im.Width, im.Height, im.Channels, im.BitDepth, first.Width, first.Height, first.Channels, first.BitDepth)
		}
	}
	out, err := alloc(first.Len * len(images))
	if err != nil {
		return nil, err
	}
	out.Width, out.Height, out.Channels, out.BitDepth = first.Width, first.Height, first.Channels, first.BitDepth
	dst, n := out.Bytes(), first.Len
	for i, im := range images {
		copy(dst[i*n:], im.Bytes())
		im.Free()
	}
	return out, nil
}

// Header reads the size of an encoded image after its EXIF orientation, without decoding it: the
// size Process picks the bucket from. data may be the file's beginning only; a header that lies
// beyond it is an error (read more).
func Header(data []byte) (width, height int, err error) {
	if len(data) == 0 {
		return 0, 0, ErrEmpty
	}
	if err := Init(); err != nil {
		return 0, 0, err
	}
	if f := goFormat(data); f != "" { // GIF and BMP carry no orientation: their header is their size
		return goHeader(data, f)
	}
	forkGate.RLock()
	defer forkGate.RUnlock()
	errGate.RLock()
	h, err := readHeader(data, true, false, false)
	errGate.RUnlock()
	if errors.Is(err, errPending) { // as in Process: again, alone, for its own message
		errGate.Lock()
		clearVipsError()
		h, err = readHeader(data, true, false, true)
		errGate.Unlock()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %w", ErrDecode, err)
	}
	if h.width <= 0 || h.height <= 0 {
		return 0, 0, fmt.Errorf("%w: image is %dx%d", ErrDecode, h.width, h.height)
	}
	return h.width, h.height, nil
}
