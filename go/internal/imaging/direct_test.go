package imaging

import (
	"image"
	"image/color"
	"math"
	"math/rand"
	"testing"

	"github.com/datago-dev/datago/internal/bucket"

	"github.com/datago-dev/datago/internal/testimg"
)

// photo is a gradient with noise: enough entropy for JPEG and resampling to behave as on photos.
func photo(w, h int, seed int64) func(x, y int) color.NRGBA {
	r := rand.New(rand.NewSource(seed))
	noise := make([]uint8, w*h)
	for i := range noise {
		noise[i] = uint8(r.Intn(48))
	}
	return func(x, y int) color.NRGBA {
		n := noise[y*w+x]
		return color.NRGBA{uint8(x*200/max(1, w-1)) + n, uint8(y*200/max(1, h-1)) + n/2, 90 + n, 255}
	}
}

func mustVipsEncode(t *testing.T, w, h int, at func(x, y int) color.NRGBA, suffix string) []byte {
	t.Helper()
	data, err := vipsEncode(rgbPixels(w, h, at), w, h, 3, suffix, "", false)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func psnr(a, b []byte) float64 {
	var se float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		se += d * d
	}
	if se == 0 {
		return math.Inf(1)
	}
	return 10 * math.Log10(255*255*float64(len(a))/se)
}

// The direct decoder must deliver exactly what libvips delivers: both run the same libjpeg or
// libpng decode, with the same shrink-on-load, and resample.c's Lanczos-3.
func TestDirectMatchesLibvips(t *testing.T) {
	const w, h = 301, 203
	at := photo(w, h, 1)
	grey := image.NewGray(image.Rect(0, 0, w, h))
	pal := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{
		color.RGBA{255, 0, 0, 255}, color.RGBA{0, 128, 255, 255}, color.RGBA{20, 20, 20, 255}})
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			grey.SetGray(x, y, color.Gray{at(x, y).R})
			pal.SetColorIndex(x, y, uint8((x/7+y/5)%3))
		}
	}
	bits := make([]byte, (w+7)/8*h) // 1-bit grey
	for i := range bits {
		bits[i] = byte(i * 37)
	}
	inputs := []struct {
		name string
		data []byte
	}{
		{"jpeg 4:2:0", testimg.JPEG(t, nrgbaImage(w, h, at), 85)},
		{"jpeg grey", testimg.JPEG(t, grey, 85)},
		{"jpeg 4:4:4 progressive", mustVipsEncode(t, w, h, at, ".jpg[Q=90,interlace,subsample_mode=off]")},
		{"jpeg orientation 1", withOrientation(testimg.JPEG(t, nrgbaImage(w, h, at), 85), 1)},
		{"png rgb", testimg.PNG(t, nrgbaImage(w, h, at))},
		{"png grey", testimg.PNG(t, grey)},
		{"png palette", testimg.PNG(t, pal)},
		{"png 1-bit grey", rawPNG(t, w, h, 0, 1, bits)},
		{"png interlaced", mustVipsEncode(t, w, h, at, ".png[interlace]")},
	}
	big := []bucket.Bucket{{Width: 128, Height: 96}, {Width: 96, Height: 128}}
	enlarge := &bucket.Bucket{Width: 512, Height: 384}
	for _, in := range inputs {
		for _, o := range []struct {
			name string
			opts Options
		}{
			{"whole", Options{}},
			{"reduce", Options{CropAndResize: true, Buckets: big}},
			{"enlarge", Options{CropAndResize: true, Target: enlarge}},
		} {
			t.Run(in.name+"/"+o.name, func(t *testing.T) {
				direct := mustProcess(t, in.data, &o.opts)
				ref := o.opts
				ref.libvipsOnly = true
				vips := mustProcess(t, in.data, &ref)
				if !direct.direct || vips.direct {
					t.Fatalf("direct path taken: %v with it allowed, %v without", direct.direct, vips.direct)
				}
				checkShape(t, direct, vips.Width, vips.Height, 3)
				if direct.OriginalWidth != vips.OriginalWidth || direct.OriginalHeight != vips.OriginalHeight {
					t.Fatalf("original size %dx%d, libvips says %dx%d", direct.OriginalWidth,
						direct.OriginalHeight, vips.OriginalWidth, vips.OriginalHeight)
				}
				if p := psnr(direct.Bytes(), vips.Bytes()); !math.IsInf(p, 1) {
					t.Fatalf("pixels differ from libvips': PSNR %.1f dB", p)
				}
			})
		}
	}
}

// Whatever the direct decoder does not reproduce exactly goes to libvips: colour management,
// rotation, alpha, 16-bit samples, and files with anything for a decoder to complain about.
func TestDirectFallsBack(t *testing.T) {
	const w, h = 64, 48
	at := photo(w, h, 2)
	jpg := testimg.JPEG(t, nrgbaImage(w, h, at), 90)
	alpha := nrgbaImage(w, h, at)
	alpha.SetNRGBA(1, 1, color.NRGBA{1, 2, 3, 4})
	rgb16 := image.NewRGBA64(image.Rect(0, 0, w, h))
	cmyk, err := vipsEncode(rgbPixels(w, h, at), w, h, 3, ".jpg", "cmyk", true)
	if err != nil {
		t.Fatal(err)
	}
	p3, err := vipsEncode(rgbPixels(w, h, at), w, h, 3, ".jpg", "p3", true)
	if err != nil {
		t.Fatal(err)
	}
	lying := withOrientation(jpg, 9)
	garbage := append(append([]byte{}, jpg[:len(jpg)/2]...), make([]byte, 64)...)
	garbage = append(garbage, jpg[len(jpg)-2:]...) // corrupt entropy data, then EOI
	for _, in := range []struct {
		name      string
		data      []byte
		delivered bool
	}{
		{"rotated", withOrientation(jpg, 6), true},
		{"orientation out of range", lying, true},
		{"icc profile", p3, true},
		{"cmyk", cmyk, true},
		{"png alpha", testimg.PNG(t, alpha), true},
		{"png 16-bit", testimg.PNG(t, rgb16), true},
		{"webp", mustVipsEncode(t, w, h, at, ".webp"), true},
		{"corrupt jpeg", garbage, true},
		{"truncated jpeg", jpg[:len(jpg)*2/3], false},
		{"truncated png", testimg.PNG(t, nrgbaImage(w, h, at))[:200], false},
	} {
		for _, opts := range []Options{{}, {CropAndResize: true, Buckets: []bucket.Bucket{{Width: 32, Height: 32}}}} {
			direct, err := Process(in.data, &opts)
			ref := opts
			ref.libvipsOnly = true
			vips, refErr := Process(in.data, &ref)
			if (err == nil) != in.delivered || (refErr == nil) != in.delivered {
				t.Fatalf("%s: errors %v and, with libvips only, %v; want delivered=%v", in.name, err, refErr, in.delivered)
			}
			if err == nil {
				if direct.direct {
					t.Errorf("%s: decoded by the direct path", in.name)
				}
				if psnr(direct.Bytes(), vips.Bytes()) != math.Inf(1) {
					t.Errorf("%s: pixels differ from libvips", in.name)
				}
			}
			direct.Free()
			vips.Free()
		}
	}
}
