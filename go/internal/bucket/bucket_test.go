package bucket

import (
	"math"
	"math/big"
	"reflect"
	"testing"
)

// naiveBuckets is an independent reference: it scans every candidate side and keeps those whose
// square lies within the ratio bounds, instead of computing the bounds with square roots.
func naiveBuckets(size, ratio int, minAR, maxAR float64) map[Bucket]bool {
	p := size / ratio
	area := p * p
	fa := float64(area)
	const eps = 1e-9 // the float slack the bounds are meant to forgive
	out := map[Bucket]bool{}
	for w := 1; w <= area; w++ {
		sq := float64(w * w)
		if sq >= fa*minAR*(1-eps) && sq <= fa*maxAR*(1+eps) && area/w > 0 {
			out[Bucket{w * ratio, area / w * ratio}] = true
		}
	}
	for h := 1; h <= area; h++ {
		sq := float64(h * h)
		if sq >= fa/maxAR*(1-eps) && sq <= fa/minAR*(1+eps) && area/h > 0 {
			out[Bucket{area / h * ratio, h * ratio}] = true
		}
	}
	return out
}

func TestBucketsWorkedExample(t *testing.T) {
	// p = 32, p*p = 1024; widths and heights 23..45 (23^2 = 529 >= 512, 45^2 = 2025 <= 2048),
	// e.g. w=23 -> 1024/23 = 44 -> (368, 704); h=43 -> 1024/43 = 23 -> (368, 688);
	// h=45 -> 1024/45 = 22 -> (352, 720), whose ratio 0.489 is just below 0.5 because of the floor.
	want := []Bucket{
		{352, 720}, {368, 704}, {368, 688}, {384, 672}, {384, 656}, {400, 640}, {416, 624},
		{416, 608}, {432, 592}, {448, 576}, {464, 560}, {480, 544}, {496, 528}, {512, 512},
		{528, 496}, {544, 480}, {560, 464}, {576, 448}, {592, 432}, {608, 416}, {624, 416},
		{640, 400}, {656, 384}, {672, 384}, {688, 368}, {704, 368}, {720, 352},
	}
	got := Buckets(512, 16, 0.5, 2.0)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Buckets(512, 16, 0.5, 2)\n got %v\nwant %v", got, want)
	}
}

func TestBucketsSmallCases(t *testing.T) {
	tests := []struct {
		size, ratio  int
		minAR, maxAR float64
		want         []Bucket
	}{
		{256, 16, 1, 1, []Bucket{{256, 256}}},
		{1024, 64, 1, 1, []Bucket{{1024, 1024}}},
		// p = 2, area 4: widths and heights both run ceil(sqrt(2)) = 2 to floor(sqrt(8)) = 2.
		{2, 1, 0.5, 2, []Bucket{{2, 2}}},
		// p = 3, area 9, ratios 0.25..4: widths 2..6 -> (2,4) (3,3) (4,2) (5,1) (6,1);
		// heights 2..6 -> (4,2) (3,3) (2,4) (1,5) (1,6).
		{9, 3, 0.25, 4, []Bucket{{3, 18}, {3, 15}, {6, 12}, {9, 9}, {12, 6}, {15, 3}, {18, 3}}},
		// p = 27, area 729: widths 25..27 -> (25,29) (26,28) (27,27); heights 27..30 ->
		// (27,27) (26,28) (25,29) (24,30). 729/0.81 is 899.9999999999999 in floats but the exact
		// bound is 30 (30*30 = 900): a bare floor(sqrt) would lose (24, 30).
		{27, 1, 0.81, 1, []Bucket{{24, 30}, {25, 29}, {26, 28}, {27, 27}}},
		{0, 16, 0.5, 2, nil},
		{512, 0, 0.5, 2, nil},
		{8, 16, 0.5, 2, nil},
		{512, 16, 2, 0.5, nil},
		{512, 16, math.NaN(), 2, nil},
		{512, 16, 0, 2, nil},
		{512, 16, -1, 2, nil},
		{512, 16, 0.5, math.Inf(1), nil},
	}
	for _, tt := range tests {
		got := Buckets(tt.size, tt.ratio, tt.minAR, tt.maxAR)
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Buckets(%d, %d, %g, %g) = %v, want %v", tt.size, tt.ratio, tt.minAR, tt.maxAR, got, tt.want)
		}
	}
}

func TestBucketsMatchNaiveReference(t *testing.T) {
	tests := []struct {
		size, ratio  int
		minAR, maxAR float64
	}{
		{512, 16, 0.5, 2},
		{1024, 16, 0.25, 4},
		{1024, 32, 0.3, 3.3},
		{768, 8, 0.5, 2},
		{256, 16, 1, 1},
		{256, 4, 0.1, 10},
		{27, 1, 0.81, 3.24},
		{35, 1, 0.5, 3.24},
		{640, 64, 0.01, 2},
		{640, 64, 0.5, 100},
	}
	for _, tt := range tests {
		got := Buckets(tt.size, tt.ratio, tt.minAR, tt.maxAR)
		want := naiveBuckets(tt.size, tt.ratio, tt.minAR, tt.maxAR)
		gotSet := map[Bucket]bool{}
		for i, b := range got {
			if gotSet[b] {
				t.Errorf("Buckets(%v): duplicate %v", tt, b)
			}
			gotSet[b] = true
			if b.Width%tt.ratio != 0 || b.Height%tt.ratio != 0 || b.Width <= 0 || b.Height <= 0 {
				t.Errorf("Buckets(%v): bad bucket %v", tt, b)
			}
			if i > 0 {
				prev := got[i-1]
				pr, r := float64(prev.Width)/float64(prev.Height), float64(b.Width)/float64(b.Height)
				if pr > r || (pr == r && prev.Width >= b.Width) {
					t.Errorf("Buckets(%v): %v before %v is out of order", tt, prev, b)
				}
			}
		}
		if !reflect.DeepEqual(gotSet, want) {
			t.Errorf("Buckets(%v): %d buckets, naive reference has %d\n got %v", tt, len(gotSet), len(want), got)
		}
	}
}

func TestSqrtBounds(t *testing.T) {
	for n := 0; n < 3000; n++ {
		sq := float64(n * n)
		if got := floorSqrt(sq); got != n {
			t.Fatalf("floorSqrt(%d^2) = %d", n, got)
		}
		if got := ceilSqrt(sq); got != n {
			t.Fatalf("ceilSqrt(%d^2) = %d", n, got)
		}
		if n > 0 {
			if got := floorSqrt(sq + 0.5); got != n {
				t.Fatalf("floorSqrt(%d^2+0.5) = %d", n, got)
			}
			if got := ceilSqrt(sq + 0.5); got != n+1 {
				t.Fatalf("ceilSqrt(%d^2+0.5) = %d", n, got)
			}
			if got := floorSqrt(sq - 0.5); got != n-1 {
				t.Fatalf("floorSqrt(%d^2-0.5) = %d", n, got)
			}
		}
	}
	if floorSqrt(math.NaN()) != 0 || ceilSqrt(-1) != 0 || floorSqrt(math.Inf(1)) != 1<<31 {
		t.Fatal("bad sqrt bound edge cases")
	}
}

func TestClosestBucket(t *testing.T) {
	buckets := Buckets(512, 16, 0.5, 2.0)
	tests := []struct {
		name          string
		buckets       []Bucket
		width, height int
		want          Bucket
	}{
		{"square", buckets, 1000, 1000, Bucket{512, 512}},
		{"very wide clamps to widest", buckets, 5000, 100, Bucket{720, 352}},
		{"very tall clamps to tallest", buckets, 100, 5000, Bucket{352, 720}},
		{"4:3", buckets, 640, 480, Bucket{592, 432}},
		{"3:4", buckets, 480, 640, Bucket{432, 592}},
		{"16:9", buckets, 1920, 1080, Bucket{672, 384}},
		{"empty list", nil, 640, 480, Bucket{}},
		// 1:1 is 0.5 from 1:2 and 1 from 2:1: a plain difference, not log space (where both are log 2 away).
		{"linear, not log", []Bucket{{2, 1}, {1, 2}}, 7, 7, Bucket{1, 2}},
		// 3:2 is exactly 0.5 from 1:1 and from 2:1: the smaller ratio wins (as in the Rust
		// loader), in either list order.
		{"tie goes to the smaller ratio", []Bucket{{1, 1}, {2, 1}}, 3, 2, Bucket{1, 1}},
		{"tie goes to the smaller ratio, reversed", []Bucket{{2, 1}, {1, 1}}, 3, 2, Bucket{1, 1}},
		// 3:4 (0.75) is 0.25 from 1:2 and 1:1; the same bucket ratio twice keeps the first.
		{"tall tie", []Bucket{{1, 1}, {1, 2}}, 3, 4, Bucket{1, 2}},
		// Sizes where the Rust loader was seen to break exact ties (256/32 buckets).
		{"rust tie 62x90", Buckets(256, 32, 0.5, 2), 62, 90, Bucket{192, 320}},
		{"rust tie 80x90", Buckets(256, 32, 0.5, 2), 80, 90, Bucket{224, 288}},
		{"rust tie 174x90", Buckets(256, 32, 0.5, 2), 174, 90, Bucket{320, 192}},
		// A tie that float64 arithmetic breaks towards 368x704; the Rust loader gives 352x720.
		{"rust tie 2003x3960", buckets, 2003, 3960, Bucket{352, 720}},
		{"equal ratios keep the first", []Bucket{{2, 2}, {1, 1}}, 5, 5, Bucket{2, 2}},
		// 1.45 is closer to 1.5 than to 1.4 by plain difference; log space agrees here but not at 1.41.
		{"between 1:1 and 2:1", []Bucket{{1, 1}, {2, 1}}, 141, 100, Bucket{1, 1}},
		{"log and linear disagree", []Bucket{{1, 1}, {2, 1}}, 145, 100, Bucket{1, 1}},
	}
	for _, tt := range tests {
		if got := Closest(tt.buckets, tt.width, tt.height); got != tt.want {
			t.Errorf("%s: Closest(%dx%d) = %v, want %v", tt.name, tt.width, tt.height, got, tt.want)
		}
	}
}

// closestRat is the rule written the slow, obvious way: every bucket's distance |bw/bh - w/h| as
// a reduced fraction (math/big, so that no product can overflow), the buckets sorted by distance,
// then by ratio (the smaller on a tie), then by list position.
func closestRat(buckets []Bucket, w, h int) Bucket {
	if len(buckets) == 0 {
		return Bucket{}
	}
	img := big.NewRat(int64(w), int64(h))
	type cand struct {
		b     Bucket
		d, r  *big.Rat
		index int
	}
	cands := make([]cand, len(buckets))
	for i, b := range buckets {
		r := big.NewRat(int64(b.Width), int64(b.Height))
		d := new(big.Rat).Sub(r, img)
		cands[i] = cand{b, d.Abs(d), r, i}
	}
	best := cands[0]
	for _, c := range cands[1:] {
		if x := c.d.Cmp(best.d); x < 0 || (x == 0 && c.r.Cmp(best.r) < 0) {
			best = c
		}
	}
	return best.b
}

// closestFrac is closestRat with int64 fractions (exact for the sizes of these tests, and fast
// enough for the sweep below under -race): distance num/den, num = |bw*h - w*bh|, den = bh*h.
func closestFrac(buckets []Bucket, w, h int) Bucket {
	best, bn, bd := Bucket{}, int64(-1), int64(1)
	for _, b := range buckets {
		n := int64(b.Width)*int64(h) - int64(w)*int64(b.Height)
		if n < 0 {
			n = -n
		}
		d := int64(b.Height) * int64(h)
		l, r := n*bd, bn*d
		smaller := int64(b.Width)*int64(best.Height) < int64(best.Width)*int64(b.Height)
		if bn < 0 || l < r || (l == r && smaller) {
			best, bn, bd = b, n, d
		}
	}
	return best
}

// closestLog is datago's former rule (log space), to find where the two disagree.
func closestLog(buckets []Bucket, w, h int) Bucket {
	var best Bucket
	bestDist := math.Inf(1)
	target := math.Log(float64(w) / float64(h))
	for _, b := range buckets {
		if d := math.Abs(math.Log(float64(b.Width)/float64(b.Height)) - target); d < bestDist {
			best, bestDist = b, d
		}
	}
	return best
}

// Every size from 1x1 to 4096x4096 on a coarse grid, for several bucket sets, against closestRat.
func TestClosestGrid(t *testing.T) {
	sets := [][]Bucket{
		Buckets(512, 16, 0.5, 2.0),
		Buckets(1024, 32, 0.25, 4.0),
		Buckets(256, 8, 0.5, 2.0),
		Buckets(64, 64, 1, 1),
	}
	steps := []int{1, 2, 3, 5, 8, 13, 31, 64, 100, 127, 255, 256, 511, 512, 767, 1000, 1023, 1024, 1500, 2047, 2048, 3000, 4095, 4096}
	for si, buckets := range sets {
		for w := 1; w <= 4096; w += 61 {
			for h := 1; h <= 4096; h += 67 {
				if got, want := Closest(buckets, w, h), closestRat(buckets, w, h); got != want {
					t.Fatalf("set %d: Closest(%dx%d) = %v, want %v", si, w, h, got, want)
				}
			}
		}
		for _, w := range steps {
			for _, h := range steps {
				if got, want := Closest(buckets, w, h), closestRat(buckets, w, h); got != want {
					t.Fatalf("set %d: Closest(%dx%d) = %v, want %v", si, w, h, got, want)
				}
			}
		}
	}
}

// Every image size up to 4096 a side whose ratio lies where log space and the plain difference pick
// different buckets (between the geometric and the arithmetic mean of two neighbouring ratios),
// and every exact tie (the arithmetic mean itself).
func TestClosestWhereRulesDisagree(t *testing.T) {
	buckets := Buckets(512, 16, 0.5, 2.0)
	disagree, ties := 0, 0
	for i := 0; i+1 < len(buckets); i++ {
		lo, hi := buckets[i], buckets[i+1]
		rl := float64(lo.Width) / float64(lo.Height)
		rh := float64(hi.Width) / float64(hi.Height)
		geo, arith := math.Sqrt(rl*rh), (rl+rh)/2
		for h := 1; h <= 4096; h++ {
			for w := int(math.Floor(geo * float64(h))); float64(w) <= math.Ceil(arith*float64(h)); w++ {
				if w < 1 || w > 4096 {
					continue
				}
				got, want := Closest(buckets, w, h), closestFrac(buckets, w, h)
				if got != want {
					t.Fatalf("Closest(%dx%d) = %v, want %v", w, h, got, want)
				}
				// An exact tie between the neighbours: w/h = (rl+rh)/2, as integers.
				if 2*w*lo.Height*hi.Height == h*(lo.Width*hi.Height+hi.Width*lo.Height) {
					ties++
					if want != lo {
						t.Fatalf("tie at %dx%d between %v and %v gave %v", w, h, lo, hi, want)
					}
				} else if closestLog(buckets, w, h) != want {
					disagree++
				}
			}
		}
	}
	if disagree < 1000 || ties == 0 {
		t.Fatalf("only %d sizes where the rules disagree and %d ties: the test covers nothing", disagree, ties)
	}
	t.Logf("%d sizes where log space would pick another bucket, %d exact ties", disagree, ties)
}

func TestPlanCrop(t *testing.T) {
	tests := []struct {
		w, h int
		b    Bucket
		want Plan
	}{
		// s = max(512/1024, 512/768) = 2/3: 1024*2/3 = 682.67 -> 683; left = (683-512)/2 = 85.
		{1024, 768, Bucket{512, 512}, Plan{683, 512, 85, 0, 512, 512}},
		// Exact fit.
		{1024, 512, Bucket{512, 256}, Plan{512, 256, 0, 0, 512, 256}},
		// Upscaling a tiny image: s = max(256/3, 256/2) = 128; 3*128 = 384; left = 64.
		{3, 2, Bucket{256, 256}, Plan{384, 256, 64, 0, 256, 256}},
		// Tall: s = max(64/100, 64/1000) = 0.64; 1000*0.64 = 640; top = (640-64)/2 = 288.
		{100, 1000, Bucket{64, 64}, Plan{64, 640, 0, 288, 64, 64}},
		// 101*0.5 = 50.5 rounds half to even (50), as Python's round does; then max(H=50, 50).
		{200, 101, Bucket{100, 50}, Plan{100, 50, 0, 0, 100, 50}},
		// 103*0.5 = 51.5 -> 52; top = (52-50)/2 = 1.
		{200, 103, Bucket{100, 50}, Plan{100, 52, 0, 1, 100, 50}},
		// Odd excess: 300x100 into 64x64: s = 0.64, sw = 192, left = 64.
		{300, 100, Bucket{64, 64}, Plan{192, 64, 64, 0, 64, 64}},
		// 7x3 into 4x4: s = 4/3, 7*4/3 = 9.33 -> 9, left = (9-4)/2 = 2.
		{7, 3, Bucket{4, 4}, Plan{9, 4, 2, 0, 4, 4}},
	}
	for _, tt := range tests {
		if got := PlanCrop(tt.w, tt.h, tt.b); got != tt.want {
			t.Errorf("PlanCrop(%dx%d, %v) = %+v, want %+v", tt.w, tt.h, tt.b, got, tt.want)
		}
	}
}
