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
// or an error wrapping a sentinel.
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
	buckets := bucket.Buckets(64, 16, 0.5, 2)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, opts := range []*Options{
			{MaxPixels: 1 << 22},
			{CropAndResize: true, Buckets: buckets, MaxPixels: 1 << 22},
			{CropAndResize: true, Target: &bucket.Bucket{Width: 16, Height: 16}, Mask: true, MaxPixels: 1 << 22},
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
