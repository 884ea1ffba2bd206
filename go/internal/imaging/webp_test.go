package imaging

import (
	"bytes"
	"errors"
	"testing"

	"github.com/datago-dev/datago/internal/bucket"
)

// WebP pixels come from libwebp on the calling thread (vips.c, dg_webp_pixels) instead of
// libvips' loader, which fills them on its worker threads: the two must agree exactly, for every
// output the rest of the pipeline makes from them, with libwebp's scaling and the file's ICC
// profile too.
func TestWebPMatchesLibvipsLoader(t *testing.T) {
	const w, h = 301, 203
	at := photo(w, h, 2)
	rgba := make([]byte, 0, w*h*4)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := at(x, y)
			rgba = append(rgba, c.R, c.G, c.B, uint8(30+(x+y)%220))
		}
	}
	encode := func(pix []byte, bands int, suffix, profile string) []byte {
		data, err := vipsEncode(pix, w, h, bands, suffix, profile, profile != "")
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	inputs := []struct {
		name string
		data []byte
	}{
		{"lossy", mustVipsEncode(t, w, h, at, ".webp[Q=80]")},
		{"lossless", mustVipsEncode(t, w, h, at, ".webp[lossless]")},
		{"alpha lossless", encode(rgba, 4, ".webp[lossless]", "")},
		{"alpha lossy", encode(rgba, 4, ".webp[Q=75]", "")},
		{"p3 profile", encode(rgbPixels(w, h, at), 3, ".webp[Q=90]", "p3")},
	}
	small := []bucket.Bucket{{Width: 64, Height: 48}, {Width: 48, Height: 64}}
	opts := []struct {
		name string
		opts Options
	}{
		{"whole", Options{}},
		{"shrink on load", Options{CropAndResize: true, Buckets: small}},
		{"enlarge", Options{CropAndResize: true, Target: &bucket.Bucket{Width: 512, Height: 384}}},
		{"keep alpha", Options{KeepAlpha: true}},
		{"native", Options{Native: true}},
		{"alpha mask", Options{AlphaMask: true, CropAndResize: true, Buckets: small}},
		{"pre-encoded", Options{PreEncode: true, Format: FormatPNG}},
	}
	for _, in := range inputs {
		for _, o := range opts {
			t.Run(in.name+"/"+o.name, func(t *testing.T) {
				got := mustProcess(t, in.data, &o.opts)
				defer got.Free()
				ref := o.opts
				ref.libvipsOnly = true
				want := mustProcess(t, in.data, &ref)
				defer want.Free()
				if got.Width != want.Width || got.Height != want.Height || got.Channels != want.Channels ||
					got.BitDepth != want.BitDepth || got.OriginalWidth != want.OriginalWidth {
					t.Fatalf("%dx%dx%d (%d-bit), libvips' loader gives %dx%dx%d (%d-bit)", got.Width, got.Height,
						got.Channels, got.BitDepth, want.Width, want.Height, want.Channels, want.BitDepth)
				}
				if !bytes.Equal(got.Bytes(), want.Bytes()) {
					t.Fatalf("pixels differ from libvips' loader")
				}
				if (got.Alpha == nil) != (want.Alpha == nil) ||
					got.Alpha != nil && !bytes.Equal(got.Alpha.Bytes(), want.Alpha.Bytes()) {
					t.Fatal("alpha mask differs from libvips' loader")
				}
			})
		}
	}
}

// A file whose header parses but whose bitstream does not decode fails as with libvips' loader,
// with the same message.
func TestWebPCorruptPixels(t *testing.T) {
	data := corruptWebP(t, mustVipsEncode(t, 120, 80, photo(120, 80, 3), ".webp[Q=80]"))
	var msgs []string
	for _, libvipsOnly := range []bool{false, true} {
		im, err := Process(data, &Options{libvipsOnly: libvipsOnly})
		if err == nil {
			im.Free()
			t.Fatalf("libvipsOnly %v: corrupt WebP decoded", libvipsOnly)
		}
		if !errors.Is(err, ErrDecode) {
			t.Fatalf("libvipsOnly %v: %v is not a decode error", libvipsOnly, err)
		}
		msgs = append(msgs, err.Error())
	}
	if msgs[0] != msgs[1] {
		t.Fatalf("message %q, libvips' loader says %q", msgs[0], msgs[1])
	}
}
