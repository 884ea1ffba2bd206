package imaging

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/bucket"

	"github.com/datago-dev/datago/internal/testimg"
)

func TestInitIsIdempotent(t *testing.T) {
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := Init(); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestRGBPNGRoundTripIsExact(t *testing.T) {
	const w, h = 37, 23
	rng := rand.New(rand.NewSource(1))
	noise := make([]color.NRGBA, w*h)
	for i := range noise {
		noise[i] = color.NRGBA{uint8(rng.Intn(256)), uint8(rng.Intn(256)), uint8(rng.Intn(256)), 255}
	}
	at := func(x, y int) color.NRGBA { return noise[y*w+x] }
	im := mustProcess(t, testimg.PNG(t, nrgbaImage(w, h, at)), nil)
	checkShape(t, im, w, h, 3)
	if !bytes.Equal(im.Bytes(), rgbPixels(w, h, at)) {
		t.Fatal("pixels differ from the input")
	}
	if im.OriginalWidth != w || im.OriginalHeight != h {
		t.Fatalf("original size %dx%d", im.OriginalWidth, im.OriginalHeight)
	}
}

func TestConversionsToRGB8(t *testing.T) {
	gray := image.NewGray(image.Rect(0, 0, 4, 1))
	copy(gray.Pix, []byte{0, 1, 128, 255})

	gray16 := image.NewGray16(image.Rect(0, 0, 4, 1))
	for i, v := range []uint16{0, 0x1234, 0x8080, 0xFFFF} {
		gray16.SetGray16(i, 0, color.Gray16{Y: v})
	}

	rgb16 := image.NewRGBA64(image.Rect(0, 0, 3, 1)) // opaque: written as 16-bit RGB
	rgb16.SetRGBA64(0, 0, color.RGBA64{0xFFFF, 0x8080, 0x0000, 0xFFFF})
	rgb16.SetRGBA64(1, 0, color.RGBA64{0x1234, 0x00FF, 0xFF00, 0xFFFF})
	rgb16.SetRGBA64(2, 0, color.RGBA64{0x7F7F, 0xABCD, 0x0101, 0xFFFF})

	nrgba := nrgbaImage(4, 1, func(x, _ int) color.NRGBA {
		return []color.NRGBA{{10, 20, 30, 255}, {10, 20, 30, 0}, {0, 0, 0, 128}, {200, 100, 0, 255}}[x]
	})

	nrgba64 := image.NewNRGBA64(image.Rect(0, 0, 2, 1))
	nrgba64.SetNRGBA64(0, 0, color.NRGBA64{0x1000, 0x2000, 0x3000, 0})
	nrgba64.SetNRGBA64(1, 0, color.NRGBA64{0x1000, 0x2000, 0x3000, 0xFFFF})

	palette := image.NewPaletted(image.Rect(0, 0, 3, 1), color.Palette{
		color.NRGBA{255, 0, 0, 255}, color.NRGBA{1, 2, 3, 255}, color.NRGBA{0, 0, 255, 255},
	})
	copy(palette.Pix, []byte{2, 0, 1})

	// Palette with a transparent entry (tRNS).
	paletteAlpha := image.NewPaletted(image.Rect(0, 0, 2, 1), color.Palette{
		color.NRGBA{9, 9, 9, 255}, color.NRGBA{0, 0, 0, 0},
	})
	copy(paletteAlpha.Pix, []byte{0, 1})

	tests := []struct {
		name string
		data []byte
		want [][]byte // pixel by pixel, first row
		tol  int
	}{
		{"grey", testimg.PNG(t, gray), [][]byte{{0, 0, 0}, {1, 1, 1}, {128, 128, 128}, {255, 255, 255}}, 0},
		{"grey 16-bit", testimg.PNG(t, gray16), [][]byte{{0, 0, 0}, {0x12, 0x12, 0x12}, {128, 128, 128}, {255, 255, 255}}, 1},
		{"rgb 16-bit", testimg.PNG(t, rgb16), [][]byte{{255, 128, 0}, {0x12, 0, 0xFF}, {0x7F, 0xAB, 1}}, 1},
		{"rgba", testimg.PNG(t, nrgba), [][]byte{{10, 20, 30}, {255, 255, 255}, {127, 127, 127}, {200, 100, 0}}, 1},
		{"rgba 16-bit", testimg.PNG(t, nrgba64), [][]byte{{255, 255, 255}, {0x10, 0x20, 0x30}}, 1},
		{"palette", testimg.PNG(t, palette), [][]byte{{0, 0, 255}, {255, 0, 0}, {1, 2, 3}}, 0},
		{"palette with transparency", testimg.PNG(t, paletteAlpha), [][]byte{{9, 9, 9}, {255, 255, 255}}, 0},
		{"grey+alpha", rawPNG(t, 3, 1, 4, 8, []byte{50, 255, 50, 0, 0, 128}),
			[][]byte{{50, 50, 50}, {255, 255, 255}, {127, 127, 127}}, 1},
		{"grey+alpha 16-bit", rawPNG(t, 2, 1, 4, 16, []byte{0x80, 0x80, 0xFF, 0xFF, 0x10, 0x00, 0x00, 0x00}),
			[][]byte{{128, 128, 128}, {255, 255, 255}}, 1},
		{"grey with tRNS", rawPNG(t, 2, 1, 0, 8, []byte{7, 40}, []byte("tRNS"), []byte{0, 40}),
			[][]byte{{7, 7, 7}, {255, 255, 255}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			im := mustProcess(t, tt.data, nil)
			checkShape(t, im, len(tt.want), 1, 3)
			for x, want := range tt.want {
				if got := pixel(im, x, 0); !near(got, want, tt.tol) {
					t.Errorf("pixel %d = %v, want %v (±%d)", x, got, want, tt.tol)
				}
			}
		})
	}
}

func TestJPEGDecode(t *testing.T) {
	const w, h = 64, 48
	at := func(x, y int) color.NRGBA {
		if x < w/2 {
			return color.NRGBA{200, 40, 40, 255}
		}
		return color.NRGBA{30, 60, 220, 255}
	}
	im := mustProcess(t, testimg.JPEG(t, nrgbaImage(w, h, at), 100), nil)
	checkShape(t, im, w, h, 3)
	for _, p := range [][2]int{{5, 5}, {20, 40}, {50, 10}, {60, 40}} {
		want := at(p[0], p[1])
		if got := pixel(im, p[0], p[1]); !near(got, []byte{want.R, want.G, want.B}, 4) {
			t.Errorf("pixel %v = %v, want about %v", p, got, want)
		}
	}

	// Greyscale JPEG comes out as RGB.
	g := image.NewGray(image.Rect(0, 0, 16, 16))
	for i := range g.Pix {
		g.Pix[i] = 77
	}
	im = mustProcess(t, testimg.JPEG(t, g, 95), nil)
	checkShape(t, im, 16, 16, 3)
	if got := pixel(im, 8, 8); !near(got, []byte{77, 77, 77}, 1) {
		t.Errorf("grey JPEG pixel = %v", got)
	}
}

func TestColourManagement(t *testing.T) {
	const w, h = 32, 16
	colours := []color.NRGBA{{200, 50, 50, 255}, {240, 240, 240, 255}, {20, 160, 40, 255}, {30, 30, 30, 255}}
	at := func(x, y int) color.NRGBA { return colours[x*len(colours)/w] }
	pix := rgbPixels(w, h, at)
	tests := []struct {
		name        string
		suffix      string
		profile     string
		keepProfile bool
		tol         int
	}{
		// Through libvips' fallback CMYK profile and back: close, not exact.
		{"cmyk jpeg without profile", ".jpg[Q=100]", "cmyk", false, 25},
		{"cmyk jpeg with profile", ".jpg[Q=100]", "cmyk", true, 25},
		{"p3 jpeg", ".jpg[Q=100]", "p3", true, 6},
		{"p3 png", ".png", "p3", true, 3},
		{"p3 webp", ".webp[lossless]", "p3", true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := vipsEncode(pix, w, h, 3, tt.suffix, tt.profile, tt.keepProfile)
			if err != nil {
				t.Fatal(err)
			}
			if tt.profile == "cmyk" {
				if cfg, err := jpeg.DecodeConfig(bytes.NewReader(data)); err != nil || cfg.ColorModel != color.CMYKModel {
					t.Fatalf("test input is not a CMYK JPEG: %v %v", cfg.ColorModel, err)
				}
			}
			if tt.profile == "p3" && tt.suffix == ".png" {
				// The stored values really are P3: using them as sRGB would be visibly wrong.
				raw, err := png.Decode(bytes.NewReader(data))
				if err != nil {
					t.Fatal(err)
				}
				r, g, b, _ := raw.At(0, 0).RGBA()
				if near([]byte{byte(r >> 8), byte(g >> 8), byte(b >> 8)}, []byte{200, 50, 50}, 8) {
					t.Fatalf("P3 encoding did not change the values: %d %d %d", r>>8, g>>8, b>>8)
				}
			}
			im := mustProcess(t, data, nil)
			checkShape(t, im, w, h, 3)
			for i, c := range colours {
				x := i*w/len(colours) + w/len(colours)/2
				if got := pixel(im, x, h/2); !near(got, []byte{c.R, c.G, c.B}, tt.tol) {
					t.Errorf("colour %d = %v, want %v (±%d)", i, got, c, tt.tol)
				}
			}
			mask := mustProcess(t, data, &Options{Mask: true, CropAndResize: true, Target: &bucket.Bucket{Width: 8, Height: 8}})
			checkShape(t, mask, 8, 8, 1)
			// Native modes convert CMYK and profiles to sRGB too: the same pixels.
			native := mustProcess(t, data, &Options{Native: true})
			checkShape(t, native, w, h, 3)
			if native.BitDepth != 8 || !bytes.Equal(native.Bytes(), im.Bytes()) {
				t.Fatalf("native: %d-bit, or other pixels than image_to_rgb8's", native.BitDepth)
			}
		})
	}
}

func TestWebP(t *testing.T) {
	const w, h = 300, 100
	pix := rgbPixels(w, h, stripes(w, h))
	data, err := vipsEncode(pix, w, h, 3, ".webp[lossless]", "", false)
	if err != nil {
		t.Fatal(err)
	}
	im := mustProcess(t, data, nil)
	checkShape(t, im, w, h, 3)
	if !bytes.Equal(im.Bytes(), pix) {
		t.Fatal("lossless WebP pixels differ")
	}
	// Shrink-on-load path (300x100 -> cover 192x64 is under 2x, so use a smaller bucket too).
	for _, b := range []bucket.Bucket{{Width: 64, Height: 64}, {Width: 16, Height: 16}, {Width: 8, Height: 24}} {
		im := mustProcess(t, data, &Options{CropAndResize: true, Target: &b})
		checkShape(t, im, b.Width, b.Height, 3)
	}
	im = mustProcess(t, data, &Options{CropAndResize: true, Target: &bucket.Bucket{Width: 16, Height: 16}})
	if got := pixel(im, 8, 8); !near(got, []byte{0, 255, 0}, 20) {
		t.Errorf("centre of the crop = %v, want green", got)
	}
}

func TestCropAndResizeSizes(t *testing.T) {
	buckets := bucket.Buckets(256, 16, 0.5, 2.0)
	sizes := [][2]int{
		{640, 480}, {480, 640}, {256, 256}, {1000, 100}, {100, 1000}, {333, 777}, {777, 333},
		{1200, 900}, {2000, 250}, {3, 2}, {1, 1}, {1, 40}, {17, 5},
	}
	for _, sz := range sizes {
		w, h := sz[0], sz[1]
		img := nrgbaImage(w, h, gradient(w, h))
		inputs := map[string][]byte{"png": testimg.PNG(t, img), "jpeg": testimg.JPEG(t, img, 90)}
		for kind, data := range inputs {
			t.Run(fmt.Sprintf("%s_%dx%d", kind, w, h), func(t *testing.T) {
				want := bucket.Closest(buckets, w, h)
				im := mustProcess(t, data, &Options{CropAndResize: true, Buckets: buckets})
				checkShape(t, im, want.Width, want.Height, 3)
				if im.OriginalWidth != w || im.OriginalHeight != h {
					t.Errorf("original size %dx%d, want %dx%d", im.OriginalWidth, im.OriginalHeight, w, h)
				}
				// Target overrides the buckets, whatever the aspect ratio.
				im = mustProcess(t, data, &Options{CropAndResize: true, Buckets: buckets, Target: &bucket.Bucket{Width: 48, Height: 80}})
				checkShape(t, im, 48, 80, 3)
			})
		}
	}
}

// The crop is centred on the cover-resized image: a 300x100 red|green|blue image resized to
// cover 64x64 becomes 192x64 and is cropped at x = 64, exactly the green third.
func TestCropIsCentred(t *testing.T) {
	for _, scale := range []int{1, 4} { // 4: large enough for JPEG shrink-on-load
		w, h := 300*scale, 100*scale
		img := nrgbaImage(w, h, stripes(w, h))
		for kind, data := range map[string][]byte{"png": testimg.PNG(t, img), "jpeg": testimg.JPEG(t, img, 95)} {
			im := mustProcess(t, data, &Options{CropAndResize: true, Target: &bucket.Bucket{Width: 64, Height: 64}})
			checkShape(t, im, 64, 64, 3)
			for y := 0; y < 64; y += 9 {
				// Lanczos rings a little at the stripe edges, which are the crop edges.
				for x := 3; x < 61; x++ {
					if got := pixel(im, x, y); !near(got, []byte{0, 255, 0}, 40) {
						t.Fatalf("%s x%d: pixel (%d,%d) = %v, want green", kind, scale, x, y, got)
					}
				}
			}
		}
	}
	// Tall: 100x300 with horizontal bands is cropped at y = 64.
	tall := nrgbaImage(100, 300, func(x, y int) color.NRGBA { return stripes(300, 100)(y, x) })
	im := mustProcess(t, testimg.PNG(t, tall), &Options{CropAndResize: true, Target: &bucket.Bucket{Width: 64, Height: 64}})
	for x := 0; x < 64; x += 9 {
		for y := 3; y < 61; y++ {
			if got := pixel(im, x, y); !near(got, []byte{0, 255, 0}, 40) {
				t.Fatalf("tall: pixel (%d,%d) = %v, want green", x, y, got)
			}
		}
	}
}

func TestUpscaleTinyImage(t *testing.T) {
	img := nrgbaImage(3, 2, func(x, y int) color.NRGBA { return color.NRGBA{uint8(x * 100), uint8(y * 200), 50, 255} })
	for _, b := range []bucket.Bucket{{Width: 256, Height: 256}, {Width: 512, Height: 128}, {Width: 64, Height: 1024}} {
		im := mustProcess(t, testimg.PNG(t, img), &Options{CropAndResize: true, Target: &b})
		checkShape(t, im, b.Width, b.Height, 3)
	}
	// Upscale on one axis, downscale on the other.
	wide := nrgbaImage(400, 10, gradient(400, 10))
	im := mustProcess(t, testimg.PNG(t, wide), &Options{CropAndResize: true, Target: &bucket.Bucket{Width: 100, Height: 100}})
	checkShape(t, im, 100, 100, 3)
}

func TestEXIFOrientation(t *testing.T) {
	// Stored 40x20: left half red, right half blue.
	const w, h = 40, 20
	at := func(x, y int) color.NRGBA {
		if x < w/2 {
			return color.NRGBA{255, 0, 0, 255}
		}
		return color.NRGBA{0, 0, 255, 255}
	}
	base := testimg.JPEG(t, nrgbaImage(w, h, at), 100)
	red, blue := []byte{255, 0, 0}, []byte{0, 0, 255}
	tests := []struct {
		orientation   uint16
		width, height int
		first, last   []byte // colours at both ends of the middle row (or column, when vertical)
		vertical      bool   // the stored left-right axis ends up top-bottom
	}{
		{1, 40, 20, red, blue, false},
		{2, 40, 20, blue, red, false}, // mirrored left-right
		{3, 40, 20, blue, red, false}, // rotated 180
		{4, 40, 20, red, blue, false}, // mirrored top-bottom: left stays left
		{5, 20, 40, red, blue, true},  // transposed
		{6, 20, 40, red, blue, true},  // displayed rotated 90 clockwise: stored left goes to the top
		{7, 20, 40, blue, red, true},  // transversed
		{8, 20, 40, blue, red, true},  // displayed rotated 90 counter-clockwise: stored left goes to the bottom
		{0, 40, 20, red, blue, false}, // invalid: ignored
		{9, 40, 20, red, blue, false}, // invalid: ignored
	}
	for _, tt := range tests {
		data := withOrientation(base, tt.orientation)
		im := mustProcess(t, data, nil)
		checkShape(t, im, tt.width, tt.height, 3)
		if im.OriginalWidth != tt.width || im.OriginalHeight != tt.height {
			t.Errorf("orientation %d: original size %dx%d", tt.orientation, im.OriginalWidth, im.OriginalHeight)
		}
		var first, last []byte
		if tt.vertical {
			first, last = pixel(im, im.Width/2, 2), pixel(im, im.Width/2, im.Height-3)
		} else {
			first, last = pixel(im, 2, im.Height/2), pixel(im, im.Width-3, im.Height/2)
		}
		if !near(first, tt.first, 10) || !near(last, tt.last, 10) {
			t.Errorf("orientation %d: ends are %v and %v, want %v and %v", tt.orientation, first, last, tt.first, tt.last)
		}
		// Buckets are chosen from the oriented size.
		im = mustProcess(t, data, &Options{CropAndResize: true, Buckets: []bucket.Bucket{{Width: 32, Height: 16}, {Width: 16, Height: 32}}})
		want := bucket.Bucket{Width: 32, Height: 16}
		if tt.width < tt.height {
			want = bucket.Bucket{Width: 16, Height: 32}
		}
		checkShape(t, im, want.Width, want.Height, 3)
	}
}

// maskValues is a greyscale mask with a few labels in irregular blobs.
func maskValues(w, h int) (*image.Gray, map[byte]bool) {
	labels := []byte{0, 37, 128, 255}
	g := image.NewGray(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewSource(7))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			g.Pix[y*g.Stride+x] = labels[((x/5)+(y/3)+rng.Intn(2))%len(labels)]
		}
	}
	set := map[byte]bool{}
	for _, v := range labels {
		set[v] = true
	}
	return g, set
}

func TestMask(t *testing.T) {
	g, labels := maskValues(120, 90)
	rgba := image.NewNRGBA(g.Bounds())
	g16 := image.NewGray16(g.Bounds())
	for i, v := range g.Pix {
		rgba.Pix[4*i], rgba.Pix[4*i+1], rgba.Pix[4*i+2], rgba.Pix[4*i+3] = v, v, v, byte(i%256)
		g16.Pix[2*i], g16.Pix[2*i+1] = v, v // v*257: exactly v after scaling to 8 bits
	}
	inputs := map[string][]byte{
		"grey":     testimg.PNG(t, g),
		"grey16":   testimg.PNG(t, g16),
		"rgba":     testimg.PNG(t, rgba),
		"greyTRNS": rawPNG(t, g.Bounds().Dx(), g.Bounds().Dy(), 0, 8, g.Pix, []byte("tRNS"), []byte{0, 37}),
	}
	targets := []*bucket.Bucket{nil, {Width: 60, Height: 45}, {Width: 37, Height: 81}, {Width: 240, Height: 180}, {Width: 500, Height: 97}, {Width: 7, Height: 7}, {Width: 120, Height: 90}}
	for name, data := range inputs {
		for _, target := range targets {
			opts := &Options{Mask: true}
			w, h := 120, 90
			if target != nil {
				opts.CropAndResize, opts.Target = true, target
				w, h = target.Width, target.Height
			}
			im := mustProcess(t, data, opts)
			checkShape(t, im, w, h, 1)
			for i, v := range im.Bytes() {
				if !labels[v] {
					t.Fatalf("%s -> %v: value %d at %d is not in the input", name, target, v, i)
				}
			}
			if target == nil && !bytes.Equal(im.Bytes(), g.Pix) {
				t.Errorf("%s: unresized mask differs from the input", name)
			}
		}
	}

	// A JPEG mask is not shrunk on load either (that would average labels).
	big, _ := maskValues(800, 800)
	jpg := testimg.JPEG(t, big, 100)
	decoded := mustProcess(t, jpg, &Options{Mask: true})
	present := map[byte]bool{}
	for _, v := range decoded.Bytes() {
		present[v] = true
	}
	im := mustProcess(t, jpg, &Options{Mask: true, CropAndResize: true, Target: &bucket.Bucket{Width: 64, Height: 64}})
	checkShape(t, im, 64, 64, 1)
	for _, v := range im.Bytes() {
		if !present[v] {
			t.Fatalf("JPEG mask: value %d is not in the decoded input", v)
		}
	}
}

func TestPreEncode(t *testing.T) {
	img := nrgbaImage(50, 30, gradient(50, 30))
	data := testimg.PNG(t, img)
	tests := []struct {
		name   string
		opts   Options
		w, h   int
		prefix []byte
	}{
		{"rgb", Options{PreEncode: true}, 50, 30, []byte{0xFF, 0xD8, 0xFF}},
		{"rgb resized", Options{PreEncode: true, CropAndResize: true, Target: &bucket.Bucket{Width: 32, Height: 16}}, 32, 16, []byte{0xFF, 0xD8, 0xFF}},
		{"mask", Options{PreEncode: true, Mask: true}, 50, 30, []byte("\x89PNG\r\n\x1a\n")},
		{"mask resized", Options{PreEncode: true, Mask: true, CropAndResize: true, Target: &bucket.Bucket{Width: 16, Height: 48}}, 16, 48, []byte("\x89PNG\r\n\x1a\n")},
	}
	for _, tt := range tests {
		im := mustProcess(t, data, &tt.opts)
		if !im.Encoded || im.Channels != 0 || im.Width != tt.w || im.Height != tt.h || im.Len != len(im.Bytes()) {
			t.Fatalf("%s: got %+v", tt.name, *im)
		}
		if !bytes.HasPrefix(im.Bytes(), tt.prefix) {
			t.Fatalf("%s: starts with % x", tt.name, im.Bytes()[:8])
		}
		var cfg image.Config
		var err error
		if tt.opts.Mask {
			cfg, err = png.DecodeConfig(bytes.NewReader(im.Bytes()))
		} else {
			cfg, err = jpeg.DecodeConfig(bytes.NewReader(im.Bytes()))
		}
		if err != nil || cfg.Width != tt.w || cfg.Height != tt.h {
			t.Fatalf("%s: decodes as %+v, %v", tt.name, cfg, err)
		}
	}
}

func TestMaxPixels(t *testing.T) {
	data := testimg.PNG(t, nrgbaImage(100, 100, gradient(100, 100)))
	if _, err := Process(data, &Options{MaxPixels: 9999}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	mustProcess(t, data, &Options{MaxPixels: 10000})

	// The limit is applied from the header alone: a huge declared size with no pixel data
	// is refused as too large, not as undecodable.
	huge := rawPNG(t, 1<<16, 1<<16, 0, 8, nil)
	if _, err := Process(huge, &Options{MaxPixels: 1 << 20}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

func TestBadInput(t *testing.T) {
	// Noise compresses badly, so half of each file is well past its header.
	const w, h = 128, 128
	rng := rand.New(rand.NewSource(3))
	noise := make([]color.NRGBA, w*h)
	for i := range noise {
		noise[i] = color.NRGBA{uint8(rng.Intn(256)), uint8(rng.Intn(256)), uint8(rng.Intn(256)), 255}
	}
	at := func(x, y int) color.NRGBA { return noise[y*w+x] }
	pngData := testimg.PNG(t, nrgbaImage(w, h, at))
	jpgData := testimg.JPEG(t, nrgbaImage(w, h, at), 90)
	webpData, err := vipsEncode(rgbPixels(w, h, at), w, h, 3, ".webp", "", false)
	if err != nil {
		t.Fatal(err)
	}
	garbage := make([]byte, 1000)
	rng.Read(garbage)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"nil", nil, ErrEmpty},
		{"empty", []byte{}, ErrEmpty},
		{"garbage", garbage, ErrDecode},
		{"text", []byte("hello, world"), ErrDecode},
		{"one byte", []byte{0xFF}, ErrDecode},
		{"png signature only", pngData[:8], ErrDecode},
		{"png header only", pngData[:33], ErrDecode},
		{"truncated png", pngData[:len(pngData)/2], ErrDecode},
		{"jpeg soi only", jpgData[:2], ErrDecode},
		{"jpeg header only", jpgData[:300], ErrDecode},
		{"truncated jpeg", jpgData[:len(jpgData)/2], ErrDecode},
		{"truncated webp", webpData[:len(webpData)/2], ErrDecode},
	}
	for _, tt := range tests {
		for _, opts := range []*Options{nil, {CropAndResize: true, Target: &bucket.Bucket{Width: 16, Height: 16}}, {Mask: true, PreEncode: true}} {
			im, err := Process(tt.data, opts)
			if !errors.Is(err, tt.want) {
				if im != nil {
					im.Free()
				}
				t.Errorf("%s (%+v): got %v, want %v", tt.name, opts, err, tt.want)
				continue
			}
			if im != nil {
				t.Errorf("%s: non-nil image with an error", tt.name)
			}
		}
	}
	// Every pixel is there, only the end marker is missing: decoded, as Pillow does.
	if im, err := Process(pngData[:len(pngData)-12], nil); err != nil {
		t.Errorf("PNG without IEND: %v", err)
	} else {
		im.Free()
	}

	_, err = Process([]byte("hello, world"), nil)
	t.Logf("garbage error: %v", err)
	if err == nil || err.Error() == ErrDecode.Error() {
		t.Errorf("error should carry libvips' text, got %q", err)
	}

	if _, err := Process(pngData, &Options{CropAndResize: true}); err == nil {
		t.Error("CropAndResize without buckets or target should fail")
	}
	if _, err := Process(pngData, &Options{CropAndResize: true, Target: &bucket.Bucket{Width: 0, Height: 10}}); err == nil {
		t.Error("an empty target should fail")
	}
}

func TestImageFree(t *testing.T) {
	im, err := Process(testimg.PNG(t, nrgbaImage(4, 4, gradient(4, 4))), nil)
	if err != nil {
		t.Fatal(err)
	}
	im.Free()
	im.Free()
	if im.Data != nil || im.Len != 0 || im.Bytes() != nil {
		t.Fatalf("not cleared: %+v", *im)
	}
	var nilImage *Image
	nilImage.Free()
}

// testCorpus returns a mix of inputs and options covering every path, including failures.
func testCorpus(t testing.TB) []struct {
	data []byte
	opts *Options
} {
	buckets := bucket.Buckets(256, 16, 0.5, 2)
	g, _ := maskValues(90, 60)
	big := nrgbaImage(900, 600, gradient(900, 600))
	webp, err := vipsEncode(rgbPixels(300, 200, gradient(300, 200)), 300, 200, 3, ".webp", "", false)
	if err != nil {
		t.Fatal(err)
	}
	cmyk, err := vipsEncode(rgbPixels(40, 30, gradient(40, 30)), 40, 30, 3, ".jpg", "cmyk", true)
	if err != nil {
		t.Fatal(err)
	}
	jpg := testimg.JPEG(t, big, 90)
	m := nativeModes[7] // RGBA16
	rgba16 := encodeNative(t, m, 300, 200, nativeSamples(m, 300, 200))
	return []struct {
		data []byte
		opts *Options
	}{
		{testimg.PNG(t, nrgbaImage(64, 48, func(x, y int) color.NRGBA { return color.NRGBA{1, 2, 3, uint8(x)} })), nil},
		{jpg, &Options{CropAndResize: true, Buckets: buckets}},
		{withOrientation(jpg, 6), &Options{CropAndResize: true, Buckets: buckets, PreEncode: true}},
		{webp, &Options{CropAndResize: true, Buckets: buckets}},
		{cmyk, &Options{CropAndResize: true, Target: &bucket.Bucket{Width: 64, Height: 32}}},
		{testimg.PNG(t, g), &Options{Mask: true, CropAndResize: true, Target: &bucket.Bucket{Width: 32, Height: 64}}},
		{testimg.PNG(t, g), &Options{Mask: true, PreEncode: true}},
		{jpg[:len(jpg)/2], &Options{CropAndResize: true, Buckets: buckets}},
		{[]byte("not an image"), nil},
		{jpg, &Options{MaxPixels: 1000}},
		// Native modes and the alpha mask: 16-bit RGBA resized, flattened with its alpha split off.
		{rgba16, &Options{Native: true, KeepAlpha: true, CropAndResize: true, Buckets: buckets}},
		{rgba16, &Options{Native: true, AlphaMask: true, CropAndResize: true, Buckets: buckets, PreEncode: true, Format: FormatPNG}},
		{testimg.PNG(t, nrgbaImage(64, 48, func(x, y int) color.NRGBA { return color.NRGBA{1, 2, 3, uint8(x)} })), &Options{AlphaMask: true}},
		{rgba16[:len(rgba16)/2], &Options{Native: true, AlphaMask: true}},
	}
}

func TestConcurrentProcess(t *testing.T) {
	corpus := testCorpus(t)
	// Reference results, one at a time.
	want := make([][]byte, len(corpus))
	for i, c := range corpus {
		if im, err := Process(c.data, c.opts); err == nil {
			want[i] = append([]byte(nil), im.Bytes()...)
			im.Free()
		}
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for n := 0; n < 3*len(corpus); n++ {
				i := (g + n) % len(corpus)
				im, err := Process(corpus[i].data, corpus[i].opts)
				if (err == nil) != (want[i] != nil) {
					t.Errorf("input %d: error %v, expected success %v", i, err, want[i] != nil)
					continue
				}
				if err == nil {
					if !bytes.Equal(im.Bytes(), want[i]) {
						t.Errorf("input %d: output differs from the sequential run", i)
					}
					im.Free()
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestNoLeaks(t *testing.T) {
	corpus := testCorpus(t)
	run := func(rounds int) {
		for r := 0; r < rounds; r++ {
			for _, c := range corpus {
				if im, err := Process(c.data, c.opts); err == nil {
					im.Free()
				}
			}
		}
	}
	// libvips' worker threads hand back their scratch buffers a moment after the call that
	// used them returns, so give the counters a little time to settle.
	settled := func(mem0 int64, allocs0, objects0 int) (int64, int, int) {
		deadline := time.Now().Add(2 * time.Second)
		for {
			mem, allocs, objects := vipsStats()
			if (mem <= mem0 && allocs <= allocs0 && objects <= objects0) || time.Now().After(deadline) {
				return mem, allocs, objects
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	run(2) // warm up: libvips creates some per-type and per-thread state once
	mem0, allocs0, objects0 := settled(0, 0, 0)
	run(20)
	mem1, allocs1, objects1 := settled(mem0, allocs0, objects0)
	t.Logf("libvips tracked memory %d -> %d bytes, allocations %d -> %d, objects %d -> %d",
		mem0, mem1, allocs0, allocs1, objects0, objects1)
	if objects1 > objects0 {
		t.Errorf("%d libvips objects leaked", objects1-objects0)
	}
	if allocs1 > allocs0 {
		t.Errorf("%d tracked allocations leaked", allocs1-allocs0)
	}
	if mem1 > mem0 {
		t.Errorf("%d bytes of tracked memory leaked", mem1-mem0)
	}
}

func BenchmarkProcessJPEG(b *testing.B) {
	const w, h = 3000, 2000
	data := testimg.JPEG(b, nrgbaImage(w, h, gradient(w, h)), 90)
	buckets := bucket.Buckets(512, 16, 0.5, 2)
	for _, bc := range []struct {
		name string
		data []byte
		opts *Options
	}{
		{"full", data, nil},
		{"bucket", data, &Options{CropAndResize: true, Buckets: buckets}},
		{"bucket_rotated", withOrientation(data, 6), &Options{CropAndResize: true, Buckets: buckets}},
		{"mask", data, &Options{CropAndResize: true, Buckets: buckets, Mask: true}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.data)))
			for i := 0; i < b.N; i++ {
				im, err := Process(bc.data, bc.opts)
				if err != nil {
					b.Fatal(err)
				}
				im.Free()
			}
		})
	}
}

func TestShrinkOnLoad(t *testing.T) {
	tests := []struct {
		loader, w, h, cw, ch, want int
	}{
		{loaderJPEG, 4000, 3000, 500, 375, 8},
		{loaderJPEG, 4000, 3000, 501, 375, 4},
		{loaderJPEG, 4000, 3000, 1000, 750, 4},
		{loaderJPEG, 4000, 3000, 1001, 750, 2},
		{loaderJPEG, 4000, 3000, 2001, 750, 1},
		{loaderJPEG, 8000, 8000, 10, 10, 8}, // libjpeg stops at 1/8
		{loaderJPEG, 100, 100, 300, 300, 1}, // upscaling
		{loaderWebP, 8000, 8000, 10, 10, 512},
		{loaderWebP, 4000, 3000, 1000, 750, 4},
		{loaderOther, 4000, 3000, 10, 10, 1},
	}
	for _, tt := range tests {
		if got := shrinkOnLoad(tt.loader, tt.w, tt.h, tt.cw, tt.ch); got != tt.want {
			t.Errorf("shrinkOnLoad(%d, %dx%d -> %dx%d) = %d, want %d", tt.loader, tt.w, tt.h, tt.cw, tt.ch, got, tt.want)
		}
	}
}
