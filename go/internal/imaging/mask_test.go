package imaging

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"testing"

	"github.com/datago-dev/datago/internal/bucket"
	"github.com/datago-dev/datago/internal/testimg"
)

// rectImage is a w x h image, white inside [x0, x1) x [y0, y1), black elsewhere.
func rectImage(w, h, x0, y0, x1, y1 int) *image.Gray {
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := y0; y < y1; y++ {
		for x := x0; x < x1; x++ {
			g.SetGray(x, y, color.Gray{255})
		}
	}
	return g
}

// edges finds the rectangle's edges in channel 0 of im along the middle row and column, in
// continuous output coordinates (pixel i spans [i, i+1)): where the profile crosses half
// height, interpolated between pixel centres. A nearest-neighbour mask crosses between two
// pixels, so its edges are integers.
func edges(im *Image) (left, right, top, bottom float64) {
	at := func(x, y int) float64 { return float64(im.Bytes()[(y*im.Width+x)*im.Channels]) }
	cross := func(n int, v func(i int) float64) (lo, hi float64) {
		lo, hi = math.NaN(), math.NaN()
		for i := 0; i+1 < n; i++ {
			a, b := v(i), v(i+1)
			if math.IsNaN(lo) && a < 127.5 && b >= 127.5 {
				lo = float64(i) + 0.5 + (127.5-a)/(b-a)
			}
			if a >= 127.5 && b < 127.5 {
				hi = float64(i) + 0.5 + (a-127.5)/(a-b)
			}
		}
		return lo, hi
	}
	left, right = cross(im.Width, func(i int) float64 { return at(i, im.Height/2) })
	top, bottom = cross(im.Height, func(i int) float64 { return at(im.Width/2, i) })
	return
}

// Masks and additional images land on the same continuous cover-and-centre-crop geometry as
// their image at every scale: enlargements up to 8x, reductions, and JPEG's 1/8 shrink-on-load.
func TestMaskAlignment(t *testing.T) {
	type size struct{ w, h int }
	sizes := []size{
		{8, 9}, {11, 7}, {10, 16}, {13, 13}, // 4-8x enlargements
		{37, 29}, {50, 70}, {63, 64}, {81, 50}, {97, 131}, // around 1x
		{300, 200}, {301, 403}, {517, 389}, {640, 480}, {1003, 611}, // reductions, JPEG 1/2..1/8 shrink
	}
	const imageTol = 0.35
	var worstMask, worstImage, worstPair float64
	for _, size := range []int{64, 256} {
		buckets := bucket.Buckets(size, 16, 0.5, 2)
		for _, sz := range sizes {
			w, h := sz.w, sz.h
			// A rectangle from about a quarter to two thirds of each side, at odd offsets.
			x0, x1, y0, y1 := w/4+1, w*2/3+1, h/4, h*2/3+1
			if x1-x0 < 2 || y1-y0 < 2 {
				x0, x1, y0, y1 = 2, w-2, 2, h-2
			}
			// Up to 8x: beyond it a rectangle a few input pixels wide is a Lanczos blob whose
			// half-height crossings no longer mark its edges.
			if b := bucket.Closest(buckets, w, h); bucket.PlanCrop(w, h, b).CoverW > 8*w || bucket.PlanCrop(w, h, b).CoverH > 8*h {
				continue
			}
			g := rectImage(w, h, x0, y0, x1, y1)
			for _, format := range []string{"png", "jpeg"} {
				var data []byte
				if format == "png" {
					data = testimg.PNG(t, g)
				} else {
					data = testimg.JPEG(t, g, 100)
				}
				img := mustProcess(t, data, &Options{CropAndResize: true, Buckets: buckets})
				target := &bucket.Bucket{Width: img.Width, Height: img.Height}
				mask := mustProcess(t, testimg.PNG(t, g), &Options{CropAndResize: true, Target: target, Mask: true})
				extra := mustProcess(t, testimg.PNG(t, g), &Options{CropAndResize: true, Target: target})
				pl := bucket.PlanCrop(w, h, *target)
				sx, sy := float64(pl.CoverW)/float64(w), float64(pl.CoverH)/float64(h)
				want := [4]float64{float64(x0)*sx - float64(pl.Left), float64(x1)*sx - float64(pl.Left),
					float64(y0)*sy - float64(pl.Top), float64(y1)*sy - float64(pl.Top)}
				name := fmt.Sprintf("%s %dx%d -> %dx%d", format, w, h, img.Width, img.Height)
				var got [3][4]float64
				for i, im := range []*Image{img, mask, extra} {
					l, r, tp, b := edges(im)
					got[i] = [4]float64{l, r, tp, b}
				}
				for k := 0; k < 4; k++ {
					dImage, dMask, dExtra := got[0][k]-want[k], got[1][k]-want[k], got[2][k]-want[k]
					dPair := got[1][k] - got[0][k]
					worstImage = max(worstImage, math.Abs(dImage), math.Abs(dExtra))
					worstMask = max(worstMask, math.Abs(dMask))
					worstPair = max(worstPair, math.Abs(dPair))
					// The mask is exact to its sampling (0.5); the Lanczos images' half-height
					// crossings carry up to ~0.3 px of measurement bias on rectangles a few input
					// pixels from the border, which the mask-to-image distance adds.
					if !(math.Abs(dMask) <= 0.5+1e-9) || !(math.Abs(dImage) <= imageTol) || !(math.Abs(dExtra) <= imageTol) ||
						!(math.Abs(dPair) <= 0.5+imageTol) {
						t.Errorf("%s edge %d: continuous %.2f, image %.2f, mask %.2f, additional image %.2f",
							name, k, want[k], got[0][k], got[1][k], got[2][k])
					}
				}
			}
		}
	}
	t.Logf("worst distance to the continuous geometry: image/additional %.3f px, mask %.3f px; mask to image %.3f px",
		worstImage, worstMask, worstPair)
}
