package bucket

import (
	"math"
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
		// log(2/1) and log(1/2) are equally far from log(1): the first wins.
		{"tie goes to first", []Bucket{{2, 1}, {1, 2}}, 7, 7, Bucket{2, 1}},
		{"tie goes to first, reversed", []Bucket{{1, 2}, {2, 1}}, 7, 7, Bucket{1, 2}},
		// 3:2 is 0.405 in log space; 2:1 is 0.693 and 1:1 is 0: |0.405-0.693| = 0.288 < 0.405.
		// (In linear space 1.5 is equally far from 1 and 2; log space decides.)
		{"log space", []Bucket{{1, 1}, {2, 1}}, 3, 2, Bucket{2, 1}},
	}
	for _, tt := range tests {
		if got := Closest(tt.buckets, tt.width, tt.height); got != tt.want {
			t.Errorf("%s: Closest(%dx%d) = %v, want %v", tt.name, tt.width, tt.height, got, tt.want)
		}
	}
	// Against brute force over every bucket.
	for w := 1; w < 400; w += 7 {
		for h := 1; h < 400; h += 11 {
			got := Closest(buckets, w, h)
			gd := math.Abs(math.Log(float64(got.Width)/float64(got.Height)) - math.Log(float64(w)/float64(h)))
			for _, b := range buckets {
				d := math.Abs(math.Log(float64(b.Width)/float64(b.Height)) - math.Log(float64(w)/float64(h)))
				if d < gd {
					t.Fatalf("Closest(%dx%d) = %v but %v is closer", w, h, got, b)
				}
			}
		}
	}
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
