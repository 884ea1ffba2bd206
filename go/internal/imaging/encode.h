/*
 * The output encoders of pre_encode_images, chosen by image_config.encode_format. They run on the
 * calling thread (libjpeg, libpng, libwebp; never libvips' savers, whose thread pool a forked
 * child does not have).
 */
#ifndef DATAGO_IMAGING_ENCODE_H
#define DATAGO_IMAGING_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#define DG_ENC_AUTO 0 /* JPEG for 3 bands, PNG otherwise (datago's default) */
#define DG_ENC_PNG 1  /* 8 or 16 bits, as the pixels */
#define DG_ENC_JPEG 2 /* 1 or 3 bands; with alpha it is written as PNG (JPEG has none) */
#define DG_ENC_WEBP 3 /* lossy at quality; 1 or 2 bands are expanded to RGB / RGBA */

/* Encodes interleaved pixels of depth bits (8, or 16 in host byte order). 16-bit pixels stay
 * 16-bit in PNG (also when JPEG falls back to PNG for alpha); JPEG and WebP, 8-bit only, get
 * their high byte. Returns 0, a malloc'd buffer in *out and the bit depth it holds in
 * *out_depth, or -1 with a message in err (at least DG_ENCODE_ERR_LEN bytes, codec.h). */
int dg_encode(const void *pixels, int width, int height, int bands, int depth, int format,
	      int quality, void **out, size_t *len, int *out_depth, char *err, size_t errlen);

#endif
