/* A separable Lanczos-3 resampler, the convolution Pillow's LANCZOS uses: when reducing, the
 * kernel is stretched by the reduction factor. libvips 8.14 enlarges through vips_affine with a
 * per-pixel interpolator, which cost ten times the JPEG decode on small images; a separable
 * filter with precomputed fixed-point taps, computed only over the crop window, costs a fraction
 * of it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "resample.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(DG_NO_SIMD)
#include <immintrin.h>
#define DG_X86 1
#endif

#define PRECISION 22 /* fixed-point weight bits: 255 * 2^22 * (sum of |w| < 1.3) fits in int32 */
#define SUPPORT 3.0

static double
lanczos3(double x)
{
	if (x == 0.0)
		return 1.0;
	if (x <= -SUPPORT || x >= SUPPORT)
		return 0.0;
	x *= M_PI;
	return SUPPORT * sin(x) * sin(x / SUPPORT) / (x * x);
}

/* Taps of output positions first..first+count-1 on an axis scaled from in_size to out_size:
 * output x samples the input at (x + 0.5) * in_size / out_size - 0.5, as Pillow and libvips'
 * reducers do. Position i uses count[i] <= ntaps weights, from input start[i]. */
typedef struct {
	int ntaps;   /* stride of weight */
	int uniform; /* every position has ntaps taps (zero-padded at the end or the start) */
	int *start;
	int *count;
	int32_t *weight;
} dg_taps;

static int
dg_taps_make(dg_taps *t, int in_size, double extent, int out_size, int first, int count, int pad)
{
	double scale = extent / out_size;
	double stretch = scale > 1.0 ? scale : 1.0;
	double support = SUPPORT * stretch;
	double *w;
	int i, j;

	t->ntaps = (int) ceil(support) * 2 + 1;
	/* Padded taps come in pairs: the SIMD pass reads two pixels at a time. */
	t->ntaps += pad && (t->ntaps & 1);
	t->uniform = pad && in_size >= t->ntaps;
	t->start = malloc(sizeof(int) * count);
	t->count = malloc(sizeof(int) * count);
	t->weight = calloc((size_t) count * t->ntaps, sizeof(int32_t));
	w = malloc(sizeof(double) * t->ntaps);
	if (!t->start || !t->count || !t->weight || !w) {
		free(w);
		return -1;
	}
	for (i = 0; i < count; i++) {
		double centre = (first + i + 0.5) * scale;
		int lo = (int) floor(centre - support + 0.5);
		int hi = (int) floor(centre + support + 0.5);
		double sum = 0.0;
		int n;

		if (lo < 0)
			lo = 0;
		if (hi > in_size)
			hi = in_size;
		n = hi - lo;
		if (n > t->ntaps)
			n = t->ntaps;
		for (j = 0; j < n; j++) {
			w[j] = lanczos3((lo + j - centre + 0.5) / stretch);
			sum += w[j];
		}
		t->start[i] = lo;
		t->count[i] = n;
		if (t->uniform) {
			/* Extend to ntaps taps with zero weights, moving the start left at the edge. */
			t->start[i] = lo + t->ntaps > in_size ? in_size - t->ntaps : lo;
			t->count[i] = t->ntaps;
		}
		for (j = 0; j < n; j++)
			t->weight[i * t->ntaps + lo - t->start[i] + j] =
				(int32_t) lrint(w[j] / (sum != 0.0 ? sum : 1.0) * (1 << PRECISION));
	}
	free(w);
	return 0;
}

static void
dg_taps_free(dg_taps *t)
{
	free(t->start);
	free(t->count);
	free(t->weight);
}

/* acc already holds the rounding half: shift, then clamp to 8 bits. */
static inline uint8_t
dg_clip(int32_t v)
{
	v >>= PRECISION;
	return v < 0 ? 0 : v > 255 ? 255 : (uint8_t) v;
}

/* One output row of the horizontal pass. */
static void
dg_hpass(const dg_taps *h, const uint8_t *src, int bands, int out_w, uint8_t *dst)
{
	const int32_t half = 1 << (PRECISION - 1);
	int x, k, b;

	for (x = 0; x < out_w; x++) {
		const int32_t *w = h->weight + x * h->ntaps;
		const uint8_t *s = src + (size_t) h->start[x] * bands;
		int n = h->count[x];

		if (bands == 3) {
			int32_t a0 = half, a1 = half, a2 = half;

			for (k = 0; k < n; k++) {
				a0 += w[k] * s[3 * k];
				a1 += w[k] * s[3 * k + 1];
				a2 += w[k] * s[3 * k + 2];
			}
			dst[3 * x] = dg_clip(a0);
			dst[3 * x + 1] = dg_clip(a1);
			dst[3 * x + 2] = dg_clip(a2);
		} else {
			for (b = 0; b < bands; b++) {
				int32_t a = half;

				for (k = 0; k < n; k++)
					a += w[k] * s[k * bands + b];
				dst[x * bands + b] = dg_clip(a);
			}
		}
	}
}

/* One output row of the vertical pass, whole rows at a time: contiguous, so it vectorises. */
static inline __attribute__((always_inline)) void
dg_vrow(const dg_taps *v, int y, const uint8_t *first, size_t line, int32_t *acc, uint8_t *dst)
{
	const int32_t *w = v->weight + y * v->ntaps;
	size_t x;
	int k;

	for (x = 0; x < line; x++)
		acc[x] = 1 << (PRECISION - 1);
	for (k = 0; k < v->count[y]; k++) {
		const uint8_t *row = first + (size_t) k * line;
		int32_t wk = w[k];

		for (x = 0; x < line; x++)
			acc[x] += wk * row[x];
	}
	for (x = 0; x < line; x++)
		dst[x] = dg_clip(acc[x]);
}

static void
dg_vpass(const dg_taps *v, const uint8_t *mid, int row0, size_t line, int out_h, int32_t *acc,
	 uint8_t *out)
{
	int y;

	for (y = 0; y < out_h; y++)
		dg_vrow(v, y, mid + (size_t) (v->start[y] - row0) * line, line, acc, out + y * line);
}

#ifdef DG_X86
/* The same, compiled for AVX2: eight 32-bit lanes instead of SSE2's emulated multiplies. */
__attribute__((target("avx2"))) static void
dg_vpass_avx2(const dg_taps *v, const uint8_t *mid, int row0, size_t line, int out_h,
	      int32_t *acc, uint8_t *out)
{
	int y;

	for (y = 0; y < out_h; y++)
		dg_vrow(v, y, mid + (size_t) (v->start[y] - row0) * line, line, acc, out + y * line);
}

/* The horizontal pass of RGB rows with AVX2. Each row is widened to RGBx so that two
 * neighbouring pixels fill eight 32-bit lanes, multiplied by their two taps (wide holds each
 * pair as {w0 x4, w1 x4}); the two halves are summed at the end. Same arithmetic as dg_hpass,
 * so the same result. dst needs one byte of slack: each pixel is stored as four bytes. */
__attribute__((target("avx2"))) static void
dg_hpass_avx2(const dg_taps *h, const int32_t *wide, const uint8_t *in, int in_w, int rows,
	      int out_w, uint8_t *rgbx, uint8_t *mid)
{
	const __m128i half = _mm_set1_epi32(1 << (PRECISION - 1));
	const int pairs = h->ntaps / 2;
	int x, y, j;

	for (y = 0; y < rows; y++) {
		const uint8_t *src = in + (size_t) y * in_w * 3;
		uint8_t *dst = mid + (size_t) y * out_w * 3;

		for (x = 0; x < in_w; x++) {
			rgbx[4 * x] = src[3 * x];
			rgbx[4 * x + 1] = src[3 * x + 1];
			rgbx[4 * x + 2] = src[3 * x + 2];
			rgbx[4 * x + 3] = 0;
		}
		for (x = 0; x < out_w; x++) {
			const uint8_t *s = rgbx + (size_t) h->start[x] * 4;
			const int32_t *w = wide + (size_t) x * pairs * 8;
			__m256i acc = _mm256_setzero_si256();
			__m128i sum;
			uint32_t px;

			for (j = 0; j < pairs; j++) {
				__m256i p = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *) (s + 8 * j)));
				__m256i wj = _mm256_loadu_si256((const __m256i *) (w + 8 * j));

				acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(p, wj));
			}
			sum = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
			sum = _mm_srai_epi32(_mm_add_epi32(sum, half), PRECISION);
			sum = _mm_packus_epi16(_mm_packs_epi32(sum, sum), sum);
			px = (uint32_t) _mm_cvtsi128_si32(sum);
			memcpy(dst + 3 * x, &px, 4);
		}
	}
}

static int
dg_avx2(void)
{
	static int has = -1;

	if (has < 0) {
		__builtin_cpu_init();
		has = __builtin_cpu_supports("avx2") != 0;
	}
	return has;
}

/* The horizontal pass through dg_hpass_avx2 when the CPU and the taps allow it: 1 if done. */
static int
dg_hpass_fast(const dg_taps *h, const uint8_t *in, int in_w, int bands, int rows, int out_w,
	      uint8_t *mid)
{
	int pairs = h->ntaps / 2, x, j, k;
	int32_t *wide;
	uint8_t *rgbx;

	if (bands != 3 || !h->uniform || !dg_avx2())
		return 0;
	wide = malloc(sizeof(int32_t) * (size_t) out_w * pairs * 8);
	rgbx = malloc((size_t) in_w * 4);
	if (!wide || !rgbx) {
		free(wide);
		free(rgbx);
		return 0;
	}
	for (x = 0; x < out_w; x++)
		for (j = 0; j < pairs; j++)
			for (k = 0; k < 8; k++)
				wide[((size_t) x * pairs + j) * 8 + k] =
					h->weight[x * h->ntaps + 2 * j + k / 4];
	dg_hpass_avx2(h, wide, in, in_w, rows, out_w, rgbx, mid);
	free(wide);
	free(rgbx);
	return 1;
}
#endif

int
dg_resample_lanczos(const uint8_t *in, int in_w, int in_h, int bands, int cover_w, int cover_h,
		    int left, int top, int out_w, int out_h, uint8_t *out)
{
	return dg_resample_lanczos_extent(in, in_w, in_h, in_w, in_h, bands, cover_w, cover_h, left,
					  top, out_w, out_h, out);
}

int
dg_resample_lanczos_extent(const uint8_t *in, int in_w, int in_h, double extent_w,
			   double extent_h, int bands, int cover_w, int cover_h, int left, int top,
			   int out_w, int out_h, uint8_t *out)
{
	dg_taps h = { 0 }, v = { 0 };
	size_t line = (size_t) out_w * bands;
	uint8_t *mid = NULL;
	int32_t *acc = NULL;
	int row0, rows, y, done = 0, ret = -1;

	if (dg_taps_make(&h, in_w, extent_w, cover_w, left, out_w, 1) ||
	    dg_taps_make(&v, in_h, extent_h, cover_h, top, out_h, 0))
		goto done;
	/* Only the input rows that the output rows reach go through the horizontal pass. */
	row0 = v.start[0];
	rows = v.start[out_h - 1] + v.count[out_h - 1] - row0;
	/* One byte of slack for dg_hpass_avx2's four-byte stores. */
	if (!(mid = malloc((size_t) rows * line + 1)) || !(acc = malloc(line * sizeof(int32_t))))
		goto done;
#ifdef DG_X86
	done = dg_hpass_fast(&h, in + (size_t) row0 * in_w * bands, in_w, bands, rows, out_w, mid);
#endif
	for (y = 0; !done && y < rows; y++)
		dg_hpass(&h, in + (size_t) (row0 + y) * in_w * bands, bands, out_w, mid + y * line);
#ifdef DG_X86
	if (dg_avx2()) {
		dg_vpass_avx2(&v, mid, row0, line, out_h, acc, out);
		ret = 0;
		goto done;
	}
#endif
	dg_vpass(&v, mid, row0, line, out_h, acc, out);
	ret = 0;
done:
	free(acc);
	free(mid);
	dg_taps_free(&h);
	dg_taps_free(&v);
	return ret;
}

/* Input index of output position i (of count, from first) on an axis scaled from in to cover. */
static int *
dg_nearest_index(int in, int cover, int first, int count)
{
	int *idx = malloc(sizeof(int) * (count > 0 ? count : 1));
	int i;

	if (!idx)
		return NULL;
	for (i = 0; i < count; i++) {
		/* Exact in integers: floor((first + i + 0.5) * in / cover). */
		long long v = ((2LL * (first + i) + 1) * in) / (2LL * cover);

		idx[i] = v < 0 ? 0 : v >= in ? in - 1 : (int) v;
	}
	return idx;
}

int
dg_resample_nearest(const uint8_t *in, int in_w, int in_h, size_t pel, int cover_w, int cover_h,
		    int left, int top, int out_w, int out_h, uint8_t *out)
{
	int *xs = dg_nearest_index(in_w, cover_w, left, out_w);
	int *ys = dg_nearest_index(in_h, cover_h, top, out_h);
	int x, y;

	if (!xs || !ys) {
		free(xs);
		free(ys);
		return -1;
	}
	for (y = 0; y < out_h; y++) {
		const uint8_t *row = in + (size_t) ys[y] * in_w * pel;
		uint8_t *dst = out + (size_t) y * out_w * pel;

		if (pel == 1)
			for (x = 0; x < out_w; x++)
				dst[x] = row[xs[x]];
		else
			for (x = 0; x < out_w; x++)
				memcpy(dst + (size_t) x * pel, row + (size_t) xs[x] * pel, pel);
	}
	free(xs);
	free(ys);
	return 0;
}
