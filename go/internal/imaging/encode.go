package imaging

// #cgo LDFLAGS: -lwebp
// #include "encode.h"
import "C"

// Format is the encoding of pre-encoded images (image_config.encode_format).
type Format int

// Formats. FormatAuto is datago's default: JPEG for RGB images, PNG for masks (JPEG has no
// single-band-with-alpha form worth using and would blur a mask's levels).
const (
	FormatAuto Format = C.DG_ENC_AUTO
	FormatPNG  Format = C.DG_ENC_PNG
	FormatJPEG Format = C.DG_ENC_JPEG
	FormatWebP Format = C.DG_ENC_WEBP
)

// DefaultQuality is the JPEG and WebP quality when Options.Quality is 0.
const DefaultQuality = 95

// quality is the encoder quality of opts: 1..100 (libjpeg treats anything lower as 1).
func (o *Options) quality() int {
	switch {
	case o.Quality <= 0:
		return DefaultQuality
	case o.Quality > 100:
		return 100
	}
	return o.Quality
}

// White is datago's default alpha background.
var White = [3]uint8{255, 255, 255}

func (o *Options) background() [3]uint8 {
	if o.Background == nil {
		return White
	}
	return *o.Background
}
