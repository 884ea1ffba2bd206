package imaging

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"testing"

	"github.com/datago-dev/datago/internal/bucket"
	"github.com/datago-dev/datago/internal/testimg"
)

var (
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
	jpegMagic = []byte{0xFF, 0xD8, 0xFF}
)

func isWebP(b []byte) bool {
	return len(b) > 12 && string(b[:4]) == "RIFF" && string(b[8:12]) == "WEBP"
}

// Every encode_format on both decode paths (the direct libpng/libjpeg one, libvips), whole and
// resized; PNG is lossless, so its pixels must equal those of the unencoded output.
func TestEncodeFormats(t *testing.T) {
	img := nrgbaImage(50, 30, gradient(50, 30))
	inputs := map[string][]byte{"png": testimg.PNG(t, img), "jpeg": testimg.JPEG(t, img, 90)}
	target := &bucket.Bucket{Width: 32, Height: 16}
	for name, data := range inputs {
		for _, libvipsOnly := range []bool{false, true} {
			for _, resize := range []bool{false, true} {
				base := Options{CropAndResize: resize, libvipsOnly: libvipsOnly}
				if resize {
					base.Target = target
				}
				plain := mustProcess(t, data, &base)
				for _, f := range []Format{FormatPNG, FormatJPEG, FormatWebP} {
					opts := base
					opts.PreEncode, opts.Format, opts.Quality = true, f, 80
					im := mustProcess(t, data, &opts)
					b := im.Bytes()
					if !im.Encoded || im.Width != plain.Width || im.Height != plain.Height {
						t.Fatalf("%s/%v/%v: format %d gave %+v", name, libvipsOnly, resize, f, *im)
					}
					switch f {
					case FormatPNG:
						dec, err := png.Decode(bytes.NewReader(b))
						if err != nil || !bytes.HasPrefix(b, pngMagic) {
							t.Fatalf("png: %v", err)
						}
						if got := rgbOf(dec); !bytes.Equal(got, plain.Bytes()) {
							t.Fatalf("%s: PNG output differs from the raw pixels", name)
						}
					case FormatJPEG:
						if _, err := jpeg.DecodeConfig(bytes.NewReader(b)); err != nil || !bytes.HasPrefix(b, jpegMagic) {
							t.Fatalf("jpeg: %v", err)
						}
					case FormatWebP:
						if !isWebP(b) {
							t.Fatalf("not WebP: % x", b[:12])
						}
						back := mustProcess(t, b, nil) // libvips reads it back at the same size
						checkShape(t, back, plain.Width, plain.Height, 3)
					}
				}
			}
		}
	}
}

// jpeg_quality reaches libjpeg and libwebp: a higher quality makes larger files.
func TestEncodeQuality(t *testing.T) {
	data := testimg.PNG(t, nrgbaImage(64, 64, stripes(64, 64)))
	for _, f := range []Format{FormatJPEG, FormatWebP} {
		lo := mustProcess(t, data, &Options{PreEncode: true, Format: f, Quality: 5})
		hi := mustProcess(t, data, &Options{PreEncode: true, Format: f, Quality: 100})
		if lo.Len >= hi.Len {
			t.Fatalf("format %d: quality 5 gave %d bytes, 100 gave %d", f, lo.Len, hi.Len)
		}
	}
}

// Masks are PNG whatever the format (JPEG has no lossless single band); WebP masks are grey RGB.
func TestEncodeMaskFormats(t *testing.T) {
	data := testimg.PNG(t, nrgbaImage(20, 10, gradient(20, 10)))
	for _, f := range []Format{FormatAuto, FormatPNG, FormatJPEG} {
		im := mustProcess(t, data, &Options{PreEncode: true, Mask: true, Format: f})
		if !bytes.HasPrefix(im.Bytes(), pngMagic) {
			t.Fatalf("format %d: mask is not PNG", f)
		}
	}
	im := mustProcess(t, data, &Options{PreEncode: true, Mask: true, Format: FormatWebP, Quality: 100})
	if !isWebP(im.Bytes()) {
		t.Fatal("mask is not WebP")
	}
}

// alpha_background: transparent pixels take the chosen colour, opaque ones keep theirs, and half
// transparent ones are mixed.
func TestAlphaBackground(t *testing.T) {
	img := nrgbaImage(3, 1, func(x, _ int) color.NRGBA {
		return []color.NRGBA{{200, 100, 50, 0}, {200, 100, 50, 255}, {200, 100, 50, 128}}[x]
	})
	data := testimg.PNG(t, img)
	for _, bg := range [][3]uint8{{255, 255, 255}, {0, 0, 0}, {128, 128, 128}, {10, 200, 30}} {
		bg := bg
		for _, opts := range []Options{{Background: &bg}, {Background: &bg, CropAndResize: true, Target: &bucket.Bucket{Width: 3, Height: 1}}} {
			im := mustProcess(t, data, &opts)
			if got := pixel(im, 0, 0); !near(got, bg[:], 0) {
				t.Fatalf("bg %v: transparent pixel is %v", bg, got)
			}
			if got := pixel(im, 1, 0); !near(got, []byte{200, 100, 50}, 0) {
				t.Fatalf("bg %v: opaque pixel is %v", bg, got)
			}
			want := make([]byte, 3)
			for i, c := range []float64{200, 100, 50} {
				want[i] = byte((c*128 + float64(bg[i])*127) / 255)
			}
			if got := pixel(im, 2, 0); !near(got, want, 1) {
				t.Fatalf("bg %v: half-transparent pixel is %v, want %v", bg, got, want)
			}
		}
	}
	// No background given: white, as before.
	if got := pixel(mustProcess(t, data, nil), 0, 0); !near(got, []byte{255, 255, 255}, 0) {
		t.Fatalf("default background: %v", got)
	}
}

func rgbOf(img image.Image) []byte {
	b := img.Bounds()
	out := make([]byte, 0, b.Dx()*b.Dy()*3)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			out = append(out, byte(r>>8), byte(g>>8), byte(bl>>8))
		}
	}
	return out
}

// KeepAlpha delivers RGBA: the image's alpha untouched at full size, an opaque one for images
// without alpha (both decode paths), and no colour bleeding from transparent pixels when resized.
func TestKeepAlpha(t *testing.T) {
	img := nrgbaImage(8, 4, func(x, y int) color.NRGBA {
		if x < 4 {
			return color.NRGBA{255, 0, 0, 0} // transparent, with a hidden red
		}
		return color.NRGBA{0, 0, 255, uint8(128 + y*20)}
	})
	data := testimg.PNG(t, img)
	im := mustProcess(t, data, &Options{KeepAlpha: true})
	checkShape(t, im, 8, 4, 4)
	for y := 0; y < 4; y++ {
		for x := 0; x < 8; x++ {
			c := img.NRGBAAt(x, y)
			if got := pixel(im, x, y); got[3] != c.A || (c.A > 0 && !near(got, []byte{c.R, c.G, c.B, c.A}, 0)) {
				t.Fatalf("pixel %d,%d = %v, want %v", x, y, got, c)
			}
		}
	}
	opaque := nrgbaImage(20, 10, gradient(20, 10))
	for name, d := range map[string][]byte{"png": testimg.PNG(t, opaque), "jpeg": testimg.JPEG(t, opaque, 90)} {
		for _, resize := range []bool{false, true} {
			opts := &Options{KeepAlpha: true}
			if resize {
				opts.CropAndResize, opts.Target = true, &bucket.Bucket{Width: 16, Height: 16}
			}
			im := mustProcess(t, d, opts)
			if im.Channels != 4 {
				t.Fatalf("%s: %d channels", name, im.Channels)
			}
			b := im.Bytes()
			for i := 3; i < len(b); i += 4 {
				if b[i] != 255 {
					t.Fatalf("%s resize=%v: alpha %d, want opaque", name, resize, b[i])
				}
			}
		}
	}
	// Resized: the visible pixels near the transparent half stay blue (premultiplied resampling).
	big := nrgbaImage(64, 32, func(x, y int) color.NRGBA {
		if x < 32 {
			return color.NRGBA{255, 0, 0, 0}
		}
		return color.NRGBA{0, 0, 255, 255}
	})
	im = mustProcess(t, testimg.PNG(t, big), &Options{KeepAlpha: true, CropAndResize: true, Target: &bucket.Bucket{Width: 20, Height: 10}})
	checkShape(t, im, 20, 10, 4)
	for x := 0; x < 20; x++ {
		if p := pixel(im, x, 5); p[3] > 32 && p[0] > 8 {
			t.Fatalf("column %d: %v: the hidden red bled into a visible pixel", x, p)
		}
	}
	// Encoded: PNG keeps the alpha.
	enc := mustProcess(t, data, &Options{KeepAlpha: true, PreEncode: true, Format: FormatPNG})
	dec, err := png.Decode(bytes.NewReader(enc.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, a := dec.At(0, 0).RGBA(); a != 0 {
		t.Fatalf("encoded alpha %d", a)
	}
}
