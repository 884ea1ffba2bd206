#ifndef DATAGO_RESAMPLE_H
#define DATAGO_RESAMPLE_H

#include <stdint.h>

/* Resizes an 8-bit interleaved image (in_w x in_h, bands) to cover_w x cover_h with a separable
 * Lanczos-3 filter (stretched when reducing, as Pillow does) and writes only the window
 * [left, left + out_w) x [top, top + out_h) of the result into out (out_w x out_h x bands).
 * Returns 0, or -1 when memory runs out. */
int dg_resample_lanczos(const uint8_t *in, int in_w, int in_h, int bands, int cover_w, int cover_h,
			int left, int top, int out_w, int out_h, uint8_t *out);

#endif
