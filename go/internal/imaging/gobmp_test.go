package imaging

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"testing"

	"golang.org/x/image/bmp"

	"github.com/datago-dev/datago/internal/bucket"
)

func gifBytes(t testing.TB, frames ...*image.Paletted) []byte {
	t.Helper()
	var buf bytes.Buffer
	g := &gif.GIF{Image: frames, Delay: make([]int, len(frames))}
	if err := gif.EncodeAll(&buf, g); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func bmpBytes(t testing.TB, img image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := bmp.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var testPalette = color.Palette{
	color.NRGBA{255, 0, 0, 255}, color.NRGBA{0, 255, 0, 255}, color.NRGBA{0, 0, 255, 255},
	color.NRGBA{10, 20, 30, 255}, color.NRGBA{0, 0, 0, 0},
}

func paletted(w, h int, at func(x, y int) uint8) *image.Paletted {
	p := image.NewPaletted(image.Rect(0, 0, w, h), testPalette)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			p.SetColorIndex(x, y, at(x, y))
		}
	}
	return p
}

// GIF (first frame) and BMP decode to exactly their pixels, at full size and through a bucket.
func TestGIFAndBMP(t *testing.T) {
	first := paletted(13, 7, func(x, y int) uint8 { return uint8((x + y) % 4) })
	second := paletted(13, 7, func(int, int) uint8 { return 2 })
	rgb := nrgbaImage(13, 7, gradient(13, 7))
	for name, tc := range map[string]struct {
		data []byte
		want []byte
	}{
		"gif first frame": {gifBytes(t, first, second), rgbOf(first)},
		"bmp 24-bit":      {bmpBytes(t, rgb), rgbOf(rgb)},
		"bmp 8-bit":       {bmpBytes(t, first), rgbOf(first)},
	} {
		im := mustProcess(t, tc.data, nil)
		checkShape(t, im, 13, 7, 3)
		if !bytes.Equal(im.Bytes(), tc.want) {
			t.Fatalf("%s: pixels differ", name)
		}
		if im.OriginalWidth != 13 || im.OriginalHeight != 7 {
			t.Fatalf("%s: original size %dx%d", name, im.OriginalWidth, im.OriginalHeight)
		}
		im = mustProcess(t, tc.data, &Options{CropAndResize: true, Buckets: bucket.Buckets(64, 16, 0.5, 2)})
		want := bucket.Closest(bucket.Buckets(64, 16, 0.5, 2), 13, 7)
		checkShape(t, im, want.Width, want.Height, 3)
	}
}

// A transparent GIF palette entry is flattened onto alpha_background.
func TestGIFTransparency(t *testing.T) {
	data := gifBytes(t, paletted(4, 2, func(x, _ int) uint8 { return map[bool]uint8{true: 4, false: 0}[x < 2] }))
	bg := [3]uint8{1, 2, 3}
	im := mustProcess(t, data, &Options{Background: &bg})
	if got := pixel(im, 0, 0); !near(got, bg[:], 0) {
		t.Fatalf("transparent pixel %v", got)
	}
	if got := pixel(im, 3, 1); !near(got, []byte{255, 0, 0}, 0) {
		t.Fatalf("opaque pixel %v", got)
	}
}

// Broken, truncated and oversized files are refused with the usual sentinels, before their
// pixels are allocated.
func TestGIFAndBMPRefused(t *testing.T) {
	big := bmpBytes(t, nrgbaImage(300, 200, gradient(300, 200)))
	if _, err := Process(big, &Options{MaxPixels: 300*200 - 1}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("max_pixels: %v", err)
	}
	g := gifBytes(t, paletted(300, 200, func(x, y int) uint8 { return uint8(x % 3) }))
	if _, err := Process(g, &Options{MaxPixels: 1000}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("gif max_pixels: %v", err)
	}
	// A header that claims 60000x60000 in a few bytes: refused from its size, not allocated.
	huge := append([]byte(nil), big[:54]...)
	huge[18], huge[19], huge[20], huge[21] = 0x60, 0xEA, 0, 0
	huge[22], huge[23], huge[24], huge[25] = 0x60, 0xEA, 0, 0
	for name, data := range map[string][]byte{
		"truncated bmp": big[:len(big)/2],
		"claims 3.6 GP": huge,
		"truncated gif": g[:len(g)/2],
		"gif header":    []byte("GIF89a\x10\x00\x10\x00"),
		"bm and junk":   append([]byte("BM"), bytes.Repeat([]byte{0xff}, 60)...),
	} {
		// A limit above 3.6 GP: the size check must refuse the short file itself.
		_, err := Process(data, &Options{MaxPixels: 1 << 33})
		if !errors.Is(err, ErrDecode) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// FuzzGoFormats: arbitrary bytes behind a GIF or BMP signature go through Go's decoders and then
// the PNG path; every outcome is a consistent image or an error wrapping a sentinel.
func FuzzGoFormats(f *testing.F) {
	f.Add(gifBytes(f, paletted(5, 3, func(x, y int) uint8 { return uint8(x) % 5 })))
	f.Add(bmpBytes(f, nrgbaImage(5, 3, gradient(5, 3))))
	f.Add(bmpBytes(f, paletted(5, 3, func(x, y int) uint8 { return uint8(y) })))
	f.Add([]byte("GIF87a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range []*Options{
			{MaxPixels: 1 << 20},
			{CropAndResize: true, Target: &bucket.Bucket{Width: 16, Height: 16}, MaxPixels: 1 << 20},
		} {
			im, err := Process(data, opts)
			if err != nil {
				if !errors.Is(err, ErrDecode) && !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("error wrapping no sentinel: %v", err)
				}
				continue
			}
			if im.Len != im.Width*im.Height*im.Channels || im.Data == nil {
				t.Fatalf("inconsistent image %dx%dx%d, %d bytes", im.Width, im.Height, im.Channels, im.Len)
			}
			im.Free()
		}
	})
}
