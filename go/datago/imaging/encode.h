#ifndef DATAGO_ENCODE_H
#define DATAGO_ENCODE_H

#include <stddef.h>
#include <stdint.h>

/* Encoders that run on the calling thread (libvips' savers run its thread pool, which a forked
 * child does not have). Both return 0 and a malloc'd buffer in *out, or -1 with a message in
 * err (at least DG_ENCODE_ERR_LEN bytes). */
#define DG_ENCODE_ERR_LEN 256 /* > libjpeg's JMSG_LENGTH_MAX */
int dg_encode_jpeg(const uint8_t *rgb, int width, int height, int quality, void **out, size_t *len,
		   char *err, size_t errlen);
int dg_encode_png(const uint8_t *pixels, int width, int height, int bands, void **out, size_t *len,
		  char *err, size_t errlen);

#endif
