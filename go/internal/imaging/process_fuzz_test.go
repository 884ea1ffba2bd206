package imaging

import (
	"errors"
	"image"
	"image/color"
	"testing"

	"github.com/datago-dev/datago/internal/bucket"

	"github.com/datago-dev/datago/internal/testimg"
)

// FuzzProcess feeds arbitrary bytes through the whole image path (the direct decoders and their
// EXIF parser, libvips, orientation, colour, crop and resize). Every outcome is a consistent image
// or an error wrapping a sentinel, and no input makes the process's peak resident set grow past
// fuzzBound. The peak RSS (VmHWM, reset before each input) is measured rather than one
// allocator's count: it sees every library (libpng and libjpeg malloc directly, libvips tracks
// only its own buffers, lcms and libexif neither) and is what the OOM killer acts on.
func FuzzProcess(f *testing.F) {
	img := image.NewNRGBA(image.Rect(0, 0, 24, 17))
	for i := range img.Pix {
		img.Pix[i] = uint8(i * 7)
	}
	gray := image.NewGray(image.Rect(0, 0, 9, 31))
	gray.Set(3, 3, color.Gray{200})
	f.Add(testimg.PNG(f, img))
	f.Add(testimg.JPEG(f, img, 80))
	f.Add(testimg.PNG(f, gray))
	f.Add([]byte("\xff\xd8\xff\xe0 not quite a jpeg"))
	f.Add(withOrientation(testimg.JPEG(f, img, 80), 1))
	f.Add(withOrientation(testimg.JPEG(f, gray, 80), 6))
	// WebP, lossy and lossless, with alpha: decoded by libwebp on the calling thread (vips.c).
	for _, suffix := range []string{".webp[Q=70]", ".webp[lossless]"} {
		data, err := vipsEncode(img.Pix, 24, 17, 4, suffix, "", false)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, c := range hostileCases(f) {
		f.Add(c.data)
	}
	buckets := bucket.Buckets(64, 16, 0.5, 2)
	f.Fuzz(func(t *testing.T, data []byte) {
		grew, measured := peakRSS(func() { fuzzOne(t, data, buckets) })
		if measured && grew > fuzzBound(len(data)) {
			t.Fatalf("a %d-byte input grew the peak RSS by %d MiB, bound %d MiB", len(data), grew>>20, fuzzBound(len(data))>>20)
		}
	})
}

// fuzzBound: the documented bound for MaxPixels 1<<22 (the decoded image and the pipeline's
// copies of it, at most about 64 MiB) on top of hostileBound.
func fuzzBound(n int) int64 { return 64<<20 + hostileBound(n) }

func fuzzOne(t *testing.T, data []byte, buckets []bucket.Bucket) {
	for _, opts := range []*Options{
		{MaxPixels: 1 << 22},
		{CropAndResize: true, Buckets: buckets, MaxPixels: 1 << 22},
		{CropAndResize: true, Target: &bucket.Bucket{Width: 16, Height: 16}, Mask: true, MaxPixels: 1 << 22},
		{CropAndResize: true, Buckets: buckets, Native: true, KeepAlpha: true, MaxPixels: 1 << 22},
		{Native: true, AlphaMask: true, MaxPixels: 1 << 22},
	} {
		im, err := Process(data, opts)
		if err != nil {
			if !errors.Is(err, ErrDecode) && !errors.Is(err, ErrEmpty) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error wrapping no sentinel: %v", err)
			}
			continue
		}
		if im.Len != im.Width*im.Height*im.Channels*im.BitDepth/8 || im.Data == nil {
			t.Fatalf("inconsistent image %dx%dx%d %d-bit, %d bytes", im.Width, im.Height, im.Channels, im.BitDepth, im.Len)
		}
		if a := im.Alpha; opts.AlphaMask != (a != nil) || a != nil && (a.Len != im.Width*im.Height || a.Channels != 1) {
			t.Fatalf("inconsistent alpha mask %+v for %dx%d", a, im.Width, im.Height)
		}
		im.Free()
	}
}
