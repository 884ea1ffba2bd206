/* A separable Lanczos-3 resampler, the convolution Pillow's LANCZOS uses: when reducing, the
 * kernel is stretched by the reduction factor. libvips 8.14 enlarges through vips_affine with a
 * per-pixel interpolator, which cost ten times the JPEG decode on small images; a separable
 * filter with precomputed fixed-point taps, computed only over the crop window, costs a fraction
 * of it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "resample.h"

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
	int ntaps; /* stride of weight */
	int *start;
	int *count;
	int32_t *weight;
} dg_taps;

static int
dg_taps_make(dg_taps *t, int in_size, int out_size, int first, int count)
{
	double scale = (double) in_size / out_size;
	double stretch = scale > 1.0 ? scale : 1.0;
	double support = SUPPORT * stretch;
	double *w;
	int i, j;

	t->ntaps = (int) ceil(support) * 2 + 1;
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
		for (j = 0; j < n; j++)
			t->weight[i * t->ntaps + j] =
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

/* One output row of the horizontal pass. Written per band count so the compiler keeps the
 * accumulators in registers. */
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

int
dg_resample_lanczos(const uint8_t *in, int in_w, int in_h, int bands, int cover_w, int cover_h,
		   int left, int top, int out_w, int out_h, uint8_t *out)
{
	const int32_t half = 1 << (PRECISION - 1);
	dg_taps h = { 0 }, v = { 0 };
	size_t line = (size_t) out_w * bands;
	uint8_t *mid = NULL;
	int32_t *acc = NULL;
	int row0, rows, y, k, ret = -1;
	size_t x;

	if (dg_taps_make(&h, in_w, cover_w, left, out_w) ||
	    dg_taps_make(&v, in_h, cover_h, top, out_h))
		goto done;
	/* Only the input rows that the output rows reach go through the horizontal pass. */
	row0 = v.start[0];
	rows = v.start[out_h - 1] + v.count[out_h - 1] - row0;
	if (!(mid = malloc((size_t) rows * line)) || !(acc = malloc(line * sizeof(int32_t))))
		goto done;
	for (y = 0; y < rows; y++)
		dg_hpass(&h, in + (size_t) (row0 + y) * in_w * bands, bands, out_w, mid + y * line);
	/* Vertical pass a whole row at a time: contiguous, so it vectorises. */
	for (y = 0; y < out_h; y++) {
		const int32_t *w = v.weight + y * v.ntaps;
		const uint8_t *first = mid + (size_t) (v.start[y] - row0) * line;
		uint8_t *dst = out + (size_t) y * line;

		for (x = 0; x < line; x++)
			acc[x] = half;
		for (k = 0; k < v.count[y]; k++) {
			const uint8_t *row = first + (size_t) k * line;
			int32_t wk = w[k];

			for (x = 0; x < line; x++)
				acc[x] += wk * row[x];
		}
		for (x = 0; x < line; x++)
			dst[x] = dg_clip(acc[x]);
	}
	ret = 0;
done:
	free(acc);
	free(mid);
	dg_taps_free(&h);
	dg_taps_free(&v);
	return ret;
}
