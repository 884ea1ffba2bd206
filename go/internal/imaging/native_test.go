package imaging

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/jpeg"
	"image/png"
	"math"
	"testing"
	"unsafe"

	"github.com/datago-dev/datago/internal/bucket"
)

// nativeMode is a PNG colour type and depth with the channels it decodes to.
type nativeMode struct {
	name      string
	colorType byte
	depth     int
	channels  int
}

var nativeModes = []nativeMode{
	{"L", 0, 8, 1}, {"LA", 4, 8, 2}, {"RGB", 2, 8, 3}, {"RGBA", 6, 8, 4},
	{"L16", 0, 16, 1}, {"LA16", 4, 16, 2}, {"RGB16", 2, 16, 3}, {"RGBA16", 6, 16, 4},
}

// nativeSamples are a smooth w x h image of the mode's channels with values in 0..maxval (16-bit
// values use all 16 bits, so a reduction to 8 bits shows); alpha, the last channel of LA and
// RGBA, is never 0 so that colours survive premultiplication.
func nativeSamples(m nativeMode, w, h int) []uint16 {
	maxval := float64(int(1)<<m.depth - 1)
	out := make([]uint16, 0, w*h*m.channels)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			for c := 0; c < m.channels; c++ {
				v := 0.5 + 0.4*math.Sin(float64(x)/7+float64(c)*1.3)*math.Cos(float64(y)/5-float64(c))
				if (m.channels == 2 || m.channels == 4) && c == m.channels-1 {
					v = 0.3 + 0.6*float64(x+y)/float64(w+h)
				}
				out = append(out, uint16(math.Round(v*maxval)))
			}
		}
	}
	return out
}

// encodeNative writes samples as a PNG of mode m.
func encodeNative(t testing.TB, m nativeMode, w, h int, samples []uint16) []byte {
	var rows bytes.Buffer
	for _, v := range samples {
		if m.depth == 16 {
			binary.Write(&rows, binary.BigEndian, v)
		} else {
			rows.WriteByte(byte(v))
		}
	}
	return rawPNG(t, w, h, m.colorType, byte(m.depth), rows.Bytes())
}

// samplesOf reads the delivered pixels as integers whatever their depth.
func samplesOf(t testing.TB, im *Image) []uint16 {
	t.Helper()
	switch im.BitDepth {
	case 8:
		out := make([]uint16, im.Len)
		for i, b := range im.Bytes() {
			out[i] = uint16(b)
		}
		return out
	case 16:
		if im.Len%2 != 0 {
			t.Fatalf("16-bit image of %d bytes", im.Len)
		}
		return append([]uint16(nil), unsafe.Slice((*uint16)(im.Data), im.Len/2)...)
	}
	t.Fatalf("bit depth %d", im.BitDepth)
	return nil
}

func checkNative(t testing.TB, im *Image, w, h int, m nativeMode) {
	t.Helper()
	if im.Width != w || im.Height != h || im.Channels != m.channels || im.BitDepth != m.depth || im.Encoded ||
		im.Len != w*h*m.channels*m.depth/8 {
		t.Fatalf("got %dx%dx%d %d-bit (len %d, encoded %v), want %dx%dx%d %d-bit",
			im.Width, im.Height, im.Channels, im.BitDepth, im.Len, im.Encoded, w, h, m.channels, m.depth)
	}
}

func TestNativeModesFullSize(t *testing.T) {
	const w, h = 37, 23
	for _, m := range nativeModes {
		t.Run(m.name, func(t *testing.T) {
			want := nativeSamples(m, w, h)
			im := mustProcess(t, encodeNative(t, m, w, h, want), &Options{Native: true, KeepAlpha: true})
			checkNative(t, im, w, h, m)
			got := samplesOf(t, im)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("sample %d: got %d, want %d", i, got[i], want[i])
				}
			}
		})
	}
}

// TestNativeModesResized: every mode keeps its channels and depth through crop_and_resize, a
// constant image stays constant (within rounding), and 16-bit output is not 8-bit output scaled up.
func TestNativeModesResized(t *testing.T) {
	const w, h = 90, 60
	b := bucket.Bucket{Width: 32, Height: 24}
	for _, m := range nativeModes {
		t.Run(m.name, func(t *testing.T) {
			// Constant: value 0.6 of the range in every channel.
			flat := make([]uint16, w*h*m.channels)
			level := uint16(math.Round(0.6 * float64(int(1)<<m.depth-1)))
			for i := range flat {
				flat[i] = level
			}
			opts := &Options{Native: true, KeepAlpha: true, CropAndResize: true, Target: &b}
			im := mustProcess(t, encodeNative(t, m, w, h, flat), opts)
			checkNative(t, im, b.Width, b.Height, m)
			tol := 1
			if m.depth == 16 {
				tol = 3
			}
			for i, v := range samplesOf(t, im) {
				if d := int(v) - int(level); d < -tol || d > tol {
					t.Fatalf("sample %d: got %d, want %d", i, v, level)
				}
			}

			smooth := mustProcess(t, encodeNative(t, m, w, h, nativeSamples(m, w, h)), opts)
			checkNative(t, smooth, b.Width, b.Height, m)
			if m.depth == 16 {
				scaled := 0
				for _, v := range samplesOf(t, smooth) {
					if v%257 == 0 {
						scaled++
					}
				}
				if scaled > smooth.Len/2/10 {
					t.Fatalf("%d of %d samples are multiples of 257: resized in 8 bits?", scaled, smooth.Len/2)
				}
			}
		})
	}
}

// TestNativeWithoutKeepAlpha: an alpha_background colour flattens in native mode too: LA gives L,
// RGBA gives RGB, 16 bits kept.
func TestNativeFlattened(t *testing.T) {
	const w, h = 20, 10
	black := [3]uint8{0, 0, 0}
	for _, m := range nativeModes {
		if m.channels != 2 && m.channels != 4 {
			continue
		}
		t.Run(m.name, func(t *testing.T) {
			src := nativeSamples(m, w, h)
			im := mustProcess(t, encodeNative(t, m, w, h, src), &Options{Native: true, Background: &black})
			out := nativeMode{channels: m.channels - 1, depth: m.depth}
			checkNative(t, im, w, h, out)
			maxval := float64(int(1)<<m.depth - 1)
			got := samplesOf(t, im)
			for p := 0; p < w*h; p++ {
				a := float64(src[p*m.channels+m.channels-1]) / maxval
				for c := 0; c < out.channels; c++ {
					want := float64(src[p*m.channels+c]) * a // onto black
					if math.Abs(float64(got[p*out.channels+c])-want) > maxval/255 {
						t.Fatalf("pixel %d channel %d: got %d, want %.1f", p, c, got[p*out.channels+c], want)
					}
				}
			}
		})
	}
}

// TestNativeRGB8Unchanged: without Native, every mode still arrives as 8-bit RGB.
func TestNativeRGB8Unchanged(t *testing.T) {
	for _, m := range nativeModes {
		im := mustProcess(t, encodeNative(t, m, 8, 8, nativeSamples(m, 8, 8)), &Options{})
		checkShape(t, im, 8, 8, 3)
		if im.BitDepth != 8 {
			t.Fatalf("%s: bit depth %d", m.name, im.BitDepth)
		}
	}
}

// TestNativePreEncoded: PNG keeps the mode and depth; JPEG writes grey and RGB (16-bit reduced to
// 8), and PNG for modes with alpha.
func TestNativePreEncoded(t *testing.T) {
	const w, h = 16, 12
	for _, m := range nativeModes {
		for _, f := range []Format{FormatPNG, FormatJPEG} {
			src := encodeNative(t, m, w, h, nativeSamples(m, w, h))
			im := mustProcess(t, src, &Options{Native: true, KeepAlpha: true, PreEncode: true, Format: f})
			if !im.Encoded {
				t.Fatalf("%s: not encoded", m.name)
			}
			alpha := m.channels == 2 || m.channels == 4
			if f == FormatJPEG && !alpha {
				dec, err := jpeg.Decode(bytes.NewReader(im.Bytes()))
				if err != nil {
					t.Fatalf("%s jpeg: %v", m.name, err)
				}
				_, grey := dec.(*image.Gray)
				if grey != (m.channels == 1) || im.BitDepth != 8 {
					t.Fatalf("%s jpeg: decoded as %T, bit depth %d", m.name, dec, im.BitDepth)
				}
				continue
			}
			if !bytes.HasPrefix(im.Bytes(), []byte("\x89PNG")) {
				t.Fatalf("%s %d: not a PNG", m.name, f)
			}
			if im.BitDepth != m.depth {
				t.Fatalf("%s %d: bit depth %d", m.name, f, im.BitDepth)
			}
			// The PNG decodes to exactly the pixels of the raw delivery.
			raw := mustProcess(t, src, &Options{Native: true, KeepAlpha: true})
			back := mustProcess(t, im.Bytes(), &Options{Native: true, KeepAlpha: true})
			checkNative(t, back, w, h, m)
			if !bytes.Equal(back.Bytes(), raw.Bytes()) {
				t.Fatalf("%s: the PNG does not hold the delivered pixels", m.name)
			}
			if _, err := png.Decode(bytes.NewReader(im.Bytes())); err != nil {
				t.Fatalf("%s: Go cannot read the PNG: %v", m.name, err)
			}
		}
	}
}

// TestAlphaMask: the alpha arrives beside the flattened image, equal to the alpha of the
// keep-alpha delivery (so aligned with it, resized or not); images without alpha give 255.
func TestAlphaMask(t *testing.T) {
	const w, h = 90, 60
	grey := [3]uint8{128, 128, 128}
	for _, m := range nativeModes {
		for _, resize := range []bool{false, true} {
			for _, native := range []bool{false, true} {
				src := encodeNative(t, m, w, h, nativeSamples(m, w, h))
				base := Options{Native: native, Background: &grey}
				ow, oh := w, h
				if resize {
					base.CropAndResize, base.Target = true, &bucket.Bucket{Width: 40, Height: 32}
					ow, oh = 40, 32
				}
				withMask := base
				withMask.AlphaMask = true
				im := mustProcess(t, src, &withMask)
				flat := mustProcess(t, src, &base)
				if im.Alpha == nil {
					t.Fatalf("%s: no alpha mask", m.name)
				}
				checkShape(t, im.Alpha, ow, oh, 1)
				if im.Channels != flat.Channels || im.BitDepth != flat.BitDepth || im.Width != ow || im.Height != oh {
					t.Fatalf("%s: %dx%dx%d %d-bit, without the mask %dx%dx%d %d-bit", m.name,
						im.Width, im.Height, im.Channels, im.BitDepth, flat.Width, flat.Height, flat.Channels, flat.BitDepth)
				}
				tol := 2 << (m.depth - 8) // 2 levels of 8 bits
				if !native && m.depth == 16 {
					tol = 2
				}
				a, b := samplesOf(t, im), samplesOf(t, flat)
				for i := range a {
					if d := int(a[i]) - int(b[i]); d < -tol || d > tol {
						t.Fatalf("%s resize=%v native=%v: sample %d is %d with the mask, %d without", m.name, resize, native, i, a[i], b[i])
					}
				}
				alpha := m.channels == 2 || m.channels == 4
				if !alpha {
					// Without alpha, the image is exactly what it is without the mask.
					if !bytes.Equal(im.Bytes(), flat.Bytes()) {
						t.Fatalf("%s resize=%v native=%v: the mask changed an opaque image", m.name, resize, native)
					}
					for i, v := range im.Alpha.Bytes() {
						if v != 255 {
							t.Fatalf("%s: opaque image, alpha %d at %d", m.name, v, i)
						}
					}
					continue
				}
				keep := base
				keep.KeepAlpha = true
				kept := mustProcess(t, src, &keep)
				ks := samplesOf(t, kept)
				for p, v := range im.Alpha.Bytes() {
					want := ks[p*kept.Channels+kept.Channels-1] >> (kept.BitDepth - 8)
					if uint16(v) != want {
						t.Fatalf("%s resize=%v: alpha %d at pixel %d, the kept alpha is %d", m.name, resize, v, p, want)
					}
				}
			}
		}
	}
}

// An opaque JPEG keeps the direct decoder with an alpha mask, which is opaque.
func TestAlphaMaskDirect(t *testing.T) {
	data := encodeJPEG(t, nrgbaImage(40, 30, gradient(40, 30)))
	for _, resize := range []bool{false, true} {
		opts := &Options{AlphaMask: true, CropAndResize: resize, Target: &bucket.Bucket{Width: 16, Height: 16}}
		im := mustProcess(t, data, opts)
		if !im.direct || im.Alpha == nil {
			t.Fatalf("resize=%v: direct %v, alpha %v", resize, im.direct, im.Alpha)
		}
		checkShape(t, im.Alpha, im.Width, im.Height, 1)
		for _, v := range im.Alpha.Bytes() {
			if v != 255 {
				t.Fatalf("alpha %d", v)
			}
		}
	}
	enc := mustProcess(t, data, &Options{AlphaMask: true, PreEncode: true})
	if !enc.direct || enc.Alpha == nil || !bytes.HasPrefix(enc.Alpha.Bytes(), []byte("\x89PNG")) {
		t.Fatalf("pre-encoded: direct %v, alpha %+v", enc.direct, enc.Alpha)
	}
}

func TestAlphaMaskPreEncoded(t *testing.T) {
	m := nativeModes[3] // RGBA
	src := encodeNative(t, m, 20, 10, nativeSamples(m, 20, 10))
	im := mustProcess(t, src, &Options{AlphaMask: true, PreEncode: true, Format: FormatJPEG})
	if !im.Encoded || im.Alpha == nil || !im.Alpha.Encoded || !bytes.HasPrefix(im.Alpha.Bytes(), []byte("\x89PNG")) {
		t.Fatalf("want an encoded image and a PNG alpha, got %+v / %+v", im, im.Alpha)
	}
	dec, err := png.Decode(bytes.NewReader(im.Alpha.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	g, ok := dec.(*image.Gray)
	if !ok {
		t.Fatalf("alpha PNG decodes as %T", dec)
	}
	samples := nativeSamples(m, 20, 10)
	for p := 0; p < 200; p++ {
		if g.Pix[p] != uint8(samples[p*4+3]) {
			t.Fatalf("pixel %d: alpha %d, want %d", p, g.Pix[p], samples[p*4+3])
		}
	}
}

// TestNativeJPEG: a grey JPEG stays grey, a colour one is RGB, as libvips (not the direct
// decoder, which only makes RGB) decodes them; EXIF orientation applies.
func TestNativeJPEG(t *testing.T) {
	const w, h = 24, 16
	grey := image.NewGray(image.Rect(0, 0, w, h))
	for i := range grey.Pix {
		grey.Pix[i] = uint8(i * 7)
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, grey, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	rgb8 := mustProcess(t, buf.Bytes(), &Options{})
	checkShape(t, rgb8, w, h, 3)
	im := mustProcess(t, buf.Bytes(), &Options{Native: true})
	checkNative(t, im, w, h, nativeMode{channels: 1, depth: 8})
	for p := 0; p < w*h; p++ {
		if d := int(im.Bytes()[p]) - int(rgb8.Bytes()[p*3]); d < -1 || d > 1 {
			t.Fatalf("pixel %d: grey %d, RGB %d", p, im.Bytes()[p], rgb8.Bytes()[p*3])
		}
	}
	rotated := mustProcess(t, withOrientation(buf.Bytes(), 6), &Options{Native: true, CropAndResize: true, Target: &bucket.Bucket{Width: 8, Height: 12}})
	checkNative(t, rotated, 8, 12, nativeMode{channels: 1, depth: 8})

	if im.direct || rotated.direct {
		t.Fatal("a grey JPEG went through the direct decoder, which makes RGB")
	}

	// A colour JPEG keeps the direct decoder (also with the alpha kept, which it has none of),
	// with libvips' pixels.
	src := encodeJPEG(t, nrgbaImage(w, h, gradient(w, h)))
	for _, resize := range []bool{false, true} {
		opts := Options{Native: true, KeepAlpha: true, CropAndResize: resize, Target: &bucket.Bucket{Width: 16, Height: 16}}
		colour := mustProcess(t, src, &opts)
		opts.libvipsOnly = true
		ref := mustProcess(t, src, &opts)
		checkNative(t, colour, ref.Width, ref.Height, nativeMode{channels: 3, depth: 8})
		if !colour.direct || ref.direct || !near(colour.Bytes(), ref.Bytes(), 2) {
			t.Fatalf("resize=%v: direct %v, or pixels other than libvips'", resize, colour.direct)
		}
	}
}

func encodeJPEG(t testing.TB, im image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, im, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
