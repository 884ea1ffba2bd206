#ifndef DATAGO_RESAMPLE_H
#define DATAGO_RESAMPLE_H

#include <stdint.h>

/* Resizes an 8-bit interleaved image (in_w x in_h, bands) to cover_w x cover_h with a separable
 * Lanczos-3 filter (stretched when reducing, as Pillow does) and writes only the window
 * [left, left + out_w) x [top, top + out_h) of the result into out (out_w x out_h x bands).
 * Returns 0, or -1 when memory runs out. */
int dg_resample_lanczos(const uint8_t *in, int in_w, int in_h, int bands, int cover_w, int cover_h,
			int left, int top, int out_w, int out_h, uint8_t *out);

/* The same, for an input that stands for extent_w x extent_h pixels of its own size (>= in_w x
 * in_h): a JPEG shrunk on load by s holds floor(w / s) pixels of a w / s-pixel image, its last
 * partial block dropped, and is mapped onto the cover as the w / s it stands for. */
int dg_resample_lanczos_extent(const uint8_t *in, int in_w, int in_h, double extent_w,
			       double extent_h, int bands, int cover_w, int cover_h, int left,
			       int top, int out_w, int out_h, uint8_t *out);

/* The same geometry with nearest-neighbour sampling at pixel centres, for masks (labels must not
 * mix): output pixel x of the cover takes input pixel floor((x + 0.5) * in_w / cover_w), so an
 * edge lands within half an output pixel of where the continuous mapping puts it, at every
 * scale. pel is the size of one pixel in bytes (any bands and sample format). Returns 0, or -1
 * when memory runs out. */
int dg_resample_nearest(const uint8_t *in, int in_w, int in_h, size_t pel, int cover_w,
			int cover_h, int left, int top, int out_w, int out_h, uint8_t *out);

#endif
