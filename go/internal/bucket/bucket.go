// Package bucket is the aspect-ratio bucket maths of crop_and_resize: which output sizes a
// configuration allows, which one an image goes to, and how it is cropped to it. Pure Go, so that
// configuration parsing needs no cgo.
package bucket

import (
	"math"
	"sort"
)

// Bucket is an output size that images are cropped and resized to.
type Bucket struct{ Width, Height int }

// Buckets returns the aspect-ratio buckets. With p = defaultImageSize / downsamplingRatio (integer division;
// callers validate that defaultImageSize is a multiple of downsamplingRatio):
// for each patch width w from ceil(sqrt(p*p*minAR)) to floor(sqrt(p*p*maxAR)) the bucket is (w, floor(p*p/w));
// for each patch height h from ceil(sqrt(p*p/maxAR)) to floor(sqrt(p*p/minAR)) the bucket is (floor(p*p/h), h);
// every size is then multiplied by downsamplingRatio and duplicates dropped. Return them sorted by aspect
// ratio width/height ascending (ties by width).
//
// Sizes or ratios that cannot describe any bucket (p < 1, a ratio that is not positive and
// finite) give nil rather than a huge or endless list.
func Buckets(defaultImageSize, downsamplingRatio int, minAspectRatio, maxAspectRatio float64) []Bucket {
	finite := func(r float64) bool { return r > 0 && !math.IsInf(r, 1) } // false for NaN too
	if downsamplingRatio <= 0 || defaultImageSize <= 0 || !finite(minAspectRatio) || !finite(maxAspectRatio) {
		return nil
	}
	p := defaultImageSize / downsamplingRatio
	area := p * p
	if p <= 0 || p > 1<<15 { // keeps area (and the loops) within int32
		return nil
	}
	fa := float64(area)

	seen := make(map[Bucket]bool)
	var out []Bucket
	add := func(w, h int) {
		b := Bucket{w * downsamplingRatio, h * downsamplingRatio}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	// Sides beyond area would give a zero other side; sides below 1 do not exist.
	for w, last := max(1, ceilSqrt(fa*minAspectRatio)), min(area, floorSqrt(fa*maxAspectRatio)); w <= last; w++ {
		add(w, area/w)
	}
	for h, last := max(1, ceilSqrt(fa/maxAspectRatio)), min(area, floorSqrt(fa/minAspectRatio)); h <= last; h++ {
		add(area/h, h)
	}
	sort.Slice(out, func(i, j int) bool {
		// Cross-multiplied so equal ratios compare equal exactly.
		l, r := out[i].Width*out[j].Height, out[j].Width*out[i].Height
		if l != r {
			return l < r
		}
		return out[i].Width < out[j].Width
	})
	return out
}

// sqrtTolerance absorbs float error in p*p*ratio and p*p/ratio: 27*27/0.81 is
// 899.9999999999999 in floats, and a bare math.Floor(math.Sqrt(...)) would say 29, not 30.
// Real inputs are far further than this from a perfect square unless they are one.
const sqrtTolerance = 1e-12

// floorSqrt returns the largest n >= 0 with n*n <= x (up to sqrtTolerance), using exact
// integer squares rather than trusting math.Sqrt near integers. Results are capped at 1<<31.
func floorSqrt(x float64) int {
	if !(x > 0) { // also NaN
		return 0
	}
	if x >= 1<<62 {
		return 1 << 31
	}
	lim := x * (1 + sqrtTolerance)
	n := int(math.Sqrt(x))
	for n > 0 && float64(n*n) > lim {
		n--
	}
	for float64((n+1)*(n+1)) <= lim {
		n++
	}
	return n
}

// ceilSqrt returns the smallest n >= 0 with n*n >= x (up to sqrtTolerance).
func ceilSqrt(x float64) int {
	if !(x > 0) {
		return 0
	}
	if x >= 1<<62 {
		return 1 << 31
	}
	lim := x * (1 - sqrtTolerance)
	n := int(math.Sqrt(x))
	for n > 0 && float64((n-1)*(n-1)) >= lim {
		n--
	}
	for float64(n*n) < lim {
		n++
	}
	return n
}

// Closest returns the bucket whose width/height ratio is closest to width/height as a plain
// difference of ratios, |bw/bh - w/h|, the rule of the original Go datago and of Photoroom's Rust
// loader, so that one config puts every image in the same bucket in all three. On an exact tie the
// smaller ratio wins, as in the Rust loader (measured against it, tests/test_rust_differential.py:
// float64 arithmetic would break some ties the other way, e.g. 2003x3960 between 352x720 and
// 368x704, and the Rust loader does not). The comparison is exact (integer cross-products). An
// empty list gives the zero Bucket; sizes must be positive.
func Closest(buckets []Bucket, width, height int) Bucket {
	var best Bucket
	// The distance of bucket b is num/den with num = |bw*h - w*bh| and den = bh*h, kept as a
	// fraction so that two distances compare by cross-multiplication.
	var bestNum, bestDen int64
	w, h := int64(width), int64(height)
	for i, b := range buckets {
		bw, bh := int64(b.Width), int64(b.Height)
		num := bw*h - w*bh
		if num < 0 {
			num = -num
		}
		den := bh * h
		if i == 0 {
			best, bestNum, bestDen = b, num, den
			continue
		}
		c := cmpProducts(num, bestDen, bestNum, den)
		if c < 0 || (c == 0 && bw*int64(best.Height) < int64(best.Width)*bh) {
			best, bestNum, bestDen = b, num, den
		}
	}
	return best
}

// cmpProducts compares a*b with c*d (all >= 0): exactly when the products fit in int64, which
// they do for every side below 2^31 (bucket sides are at most 65535, images a few hundred
// thousand pixels); in float64 beyond, where rounding can only matter on a near tie.
func cmpProducts(a, b, c, d int64) int {
	const lim = 1 << 31
	if a < lim && b < lim && c < lim && d < lim {
		x, y := a*b, c*d
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	}
	x, y := float64(a)*float64(b), float64(c)*float64(d)
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

// Plan is the cover-then-centre-crop geometry of one image.
type Plan struct {
	CoverW, CoverH int // size the whole image is resized to
	Left, Top      int // offset of the crop inside the resized image
	OutW, OutH     int // output (bucket) size
}

// PlanCrop computes the geometry for an image of w x h (after EXIF orientation) and bucket b.
// It must agree exactly with the Python reference: s = max(W/w, H/h),
// sw = max(W, round(w*s)), sh = max(H, round(h*s)), left = (sw-W)//2, top = (sh-H)//2.
// Rounding is half-to-even, as Python's round() does.
func PlanCrop(w, h int, b Bucket) Plan {
	s := math.Max(float64(b.Width)/float64(w), float64(b.Height)/float64(h))
	sw := max(b.Width, int(math.RoundToEven(float64(w)*s)))
	sh := max(b.Height, int(math.RoundToEven(float64(h)*s)))
	return Plan{
		CoverW: sw,
		CoverH: sh,
		Left:   (sw - b.Width) / 2,
		Top:    (sh - b.Height) / 2,
		OutW:   b.Width,
		OutH:   b.Height,
	}
}
