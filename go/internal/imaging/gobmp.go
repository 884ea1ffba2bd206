package imaging

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/draw"
	"image/gif"
	"image/png"

	"golang.org/x/image/bmp"
)

// GIF and BMP files (the Rust loader serves both from folders) are decoded by Go's memory-safe
// decoders (image/gif, first frame; golang.org/x/image/bmp: 8-, 24- and 32-bit uncompressed),
// never by a libvips loader, and handed to the libvips path as an uncompressed PNG: one
// conversion that keeps every later step (alpha, buckets, encoding) the same for every format.

// goFormat names data's format when it is one of those ("" otherwise), from its signature.
func goFormat(data []byte) string {
	switch {
	case bytes.HasPrefix(data, []byte("GIF87a")), bytes.HasPrefix(data, []byte("GIF89a")):
		return "gif"
	case len(data) >= 26 && data[0] == 'B' && data[1] == 'M':
		return "bmp"
	}
	return ""
}

// goHeader is Header for GIF and BMP.
func goHeader(data []byte, format string) (width, height int, err error) {
	var cfg image.Config
	if format == "gif" {
		cfg, err = gif.DecodeConfig(bytes.NewReader(data))
	} else {
		cfg, err = bmp.DecodeConfig(bytes.NewReader(data))
	}
	if err != nil {
		return 0, 0, fmt.Errorf("%w: %s: %v", ErrDecode, format, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return 0, 0, fmt.Errorf("%w: %s image is %dx%d", ErrDecode, format, cfg.Width, cfg.Height)
	}
	return cfg.Width, cfg.Height, nil
}

// transcode decodes a GIF or BMP and re-encodes it as PNG. An image with more than maxPixels
// pixels (when > 0) is refused with ErrTooLarge from its header, before any pixel is allocated.
func transcode(data []byte, format string, maxPixels int64) ([]byte, error) {
	width, height, err := goHeader(data, format)
	if err != nil {
		return nil, err
	}
	w, h := int64(width), int64(height)
	if maxPixels > 0 && w*h > maxPixels {
		return nil, fmt.Errorf("%w: %dx%d is %d pixels, more than the limit of %d", ErrTooLarge, w, h, w*h, maxPixels)
	}
	if format == "bmp" {
		// An uncompressed BMP holds every row: a short file would make the decoder allocate the
		// whole image only to fail, so its size is checked first.
		if need := bmpPixelBytes(data, w, h); need < 0 || int64(len(data)) < need {
			return nil, fmt.Errorf("%w: bmp: truncated (%d bytes for a %dx%d image)", ErrDecode, len(data), w, h)
		}
	}
	r := bytes.NewReader(data)
	var img image.Image
	if format == "gif" {
		img, err = gif.Decode(r) // the first frame
	} else {
		img, err = bmp.Decode(r)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDecode, format, err)
	}
	// Paletted and BGR images become NRGBA: PNG keeps a transparent palette entry as alpha, which
	// the libvips path then flattens onto alpha_background.
	b := img.Bounds()
	nrgba, ok := img.(*image.NRGBA)
	if !ok {
		nrgba = image.NewNRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
		draw.Draw(nrgba, nrgba.Bounds(), img, b.Min, draw.Src)
	}
	var out bytes.Buffer
	out.Grow(len(nrgba.Pix) + 1024)
	enc := png.Encoder{CompressionLevel: png.NoCompression}
	if err := enc.Encode(&out, nrgba); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrDecode, format, err)
	}
	return out.Bytes(), nil
}

// bmpPixelBytes is the file size an uncompressed BMP of w x h needs: the pixel data offset plus
// padded rows; -1 when the header says something else (compressed, unknown depth): the decoder
// then refuses it.
func bmpPixelBytes(data []byte, w, h int64) int64 {
	if len(data) < 30 {
		return -1
	}
	offset := int64(binary.LittleEndian.Uint32(data[10:14]))
	bpp := int64(binary.LittleEndian.Uint16(data[28:30]))
	if bpp != 8 && bpp != 24 && bpp != 32 {
		return 0 // not for this check; bmp.Decode says what it supports
	}
	row := (w*bpp + 31) / 32 * 4
	return offset + row*h
}
