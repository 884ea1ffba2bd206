#ifndef DATAGO_CODEC_H
#define DATAGO_CODEC_H

#include <stddef.h>
#include <stdint.h>

/* Encoders and decoders that call libjpeg and libpng directly, on the calling thread (libvips'
 * savers run its thread pool, which a forked child does not have). The encoders return 0 and a
 * malloc'd buffer in *out, or -1 with a message in err (at least DG_ENCODE_ERR_LEN bytes). */
#define DG_ENCODE_ERR_LEN 256 /* > libjpeg's JMSG_LENGTH_MAX */
/* bands: 1 (grey JPEG) or 3 (RGB). */
int dg_encode_jpeg(const uint8_t *pixels, int width, int height, int bands, int quality, void **out,
		   size_t *len, char *err, size_t errlen);
int dg_encode_png(const uint8_t *pixels, int width, int height, int bands, void **out, size_t *len,
		  char *err, size_t errlen);
/* 16-bit samples in host byte order, 1 to 4 bands (grey, grey + alpha, RGB, RGBA). */
int dg_encode_png16(const uint16_t *pixels, int width, int height, int bands, void **out,
		    size_t *len, char *err, size_t errlen);

/* Direct decoders. libvips builds a graph of objects per image, which on small images costs as
 * much as the decode itself; the common case is decoded with libjpeg or libpng straight into
 * 8-bit RGB instead: an 8-bit JPEG (YCbCr, RGB or grey) or an 8-bit-or-less PNG without alpha,
 * with no ICC profile and no EXIF rotation. Anything else, and any file a decoder warns about or
 * fails on, is left to libvips, which remains the reference (the tests check that both give the
 * same pixels) and the one that names the error. */
#define DG_DIRECT_NO 0        /* not for the direct path: use libvips */
#define DG_DIRECT_OK 1        /* decoded */
#define DG_DIRECT_TOO_LARGE 2 /* header read: more pixels than max_pixels, nothing decoded */

typedef struct dg_raw {
	uint8_t *pixels; /* RGB, malloc'd */
	int width;       /* after shrink */
	int height;
	int full_width; /* from the header, before shrink */
	int full_height;
	int grey; /* the file is greyscale (expanded to RGB in pixels) */
} dg_raw;

/* loader is one of vips.h's DG_LOADER_*. Reads the header only (pixels stays NULL). */
int dg_direct_header(const void *buf, size_t len, int loader, dg_raw *out, char *err, size_t errlen);

/* Both write libjpeg's or libpng's message into err (errlen bytes) when the library fails; a
 * fallback for warnings or unsupported features leaves it empty. */

/* Decodes with a shrink-on-load factor (JPEG only: 1, 2, 4 or 8). Refuses (DG_DIRECT_TOO_LARGE)
 * an image with more than max_pixels pixels, and falls back (DG_DIRECT_NO) when the decoded
 * image would have more than max_decoded pixels; a limit <= 0 means none. */
int dg_direct_decode(const void *buf, size_t len, int loader, int shrink, long long max_pixels,
		     long long max_decoded, dg_raw *out, char *err, size_t errlen);

/* Decodes (up to max_decoded pixels) only for libjpeg's or libpng's message in err, empty when
 * they find nothing wrong or the direct path does not apply: libvips' own text for some
 * failures says no more than "libpng read error". */
void dg_codec_error(const void *buf, size_t len, int loader, long long max_decoded, char *err,
		    size_t errlen);

#endif
