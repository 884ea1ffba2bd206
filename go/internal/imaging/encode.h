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
#define DG_ENC_PNG 1
#define DG_ENC_JPEG 2 /* 3 bands; anything else is written as PNG (JPEG has no alpha) */
#define DG_ENC_WEBP 3 /* lossy at quality; 1 or 2 bands are expanded to RGB / RGBA */

/* Encodes 8-bit interleaved pixels. Returns 0 and a malloc'd buffer in *out, or -1 with a
 * message in err (at least DG_ENCODE_ERR_LEN bytes, codec.h). */
int dg_encode(const uint8_t *pixels, int width, int height, int bands, int format, int quality,
	      void **out, size_t *len, char *err, size_t errlen);

#endif
