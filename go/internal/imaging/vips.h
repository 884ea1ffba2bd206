/*
 * C side of the imaging package. cgo cannot call libvips' variadic functions, so every libvips
 * call goes through these helpers. Each helper that reads the caller's encoded bytes (Go memory)
 * releases every VipsImage before it returns: libvips loads buffers lazily without copying them,
 * and no reference to Go memory may outlive the call.
 */
#ifndef DATAGO_IMAGING_VIPS_H
#define DATAGO_IMAGING_VIPS_H

#include <stddef.h>

#include "prescan.h"

#define DG_LOADER_OTHER 0
#define DG_LOADER_JPEG 1
#define DG_LOADER_WEBP 2
#define DG_LOADER_PNG 3

typedef struct dg_header {
	int width; /* after EXIF orientation */
	int height;
	int orientation; /* 1..8 */
	int loader;      /* DG_LOADER_* */
	int direct;      /* read by codec.c's direct decoder, which can decode it too */
	char err[DG_ERR_LEN];       /* datago's own message on failure; empty: see libvips' buffer */
	char codec_err[DG_ERR_LEN]; /* the direct decoder's (libjpeg's, libpng's) message, if it failed */
} dg_header;

typedef struct dg_params {
	int probe;            /* 1: no dg_read_header call was made; read loader, orientation, size here */
	int direct;           /* 1: try codec.c's direct decoder first (see codec.h) */
	long long max_pixels; /* with probe: refuse (too_large) an image with more pixels, if > 0 */
	int loader;           /* from dg_read_header */
	int orientation;      /* from dg_read_header */
	int shrink;      /* shrink-on-load factor: 1 (none), or a power of two (JPEG: up to 8) */
	int full_width;  /* with shrink > 1 on a JPEG: the oriented size before it (see resample.h) */
	int full_height;
	int resize;      /* 0: deliver the whole image; otherwise resize to cover then crop */
	int cover_width;
	int cover_height;
	int crop_left;
	int crop_top;
	int out_width;
	int out_height;
	int mask;       /* one 8-bit band, nearest-neighbour resampling */
	int pre_encode; /* encoded bytes instead of raw pixels, written by encode.h's dg_encode */
	int encode_format; /* DG_ENC_* (encode.h) */
	int quality;       /* JPEG and WebP quality, 0..100 */
	double background[3]; /* RGB that alpha is flattened onto, 0..255 */
	int keep_alpha;       /* alpha not flattened (alpha_background "keep"): RGBA, or with native
			       * LA / RGBA when the image has alpha; never direct */
	int native;           /* image_to_rgb8 false: grey stays grey (1 band), 16-bit stays 16-bit
			       * (ushort); only colour spaces other than grey and sRGB are converted.
			       * The direct decoder serves only its colour images. */
	int alpha_mask;       /* flattened as without keep_alpha, and the alpha (opaque when the image
			       * has none, after the same resize) written to mask_data as 8-bit grey */
	int webp_libvips;     /* tests: WebP pixels from libvips' loader (the reference) rather than
			       * from libwebp on the calling thread (vips.c, dg_webp_pixels) */
} dg_params;

typedef struct dg_output {
	void *data; /* malloc'd: release with free() */
	size_t len;
	int width;
	int height;
	int bands; /* 0 when encoded */
	int bit_depth; /* 8 or 16 (native 16-bit images): of the pixels, or of the encoded ones */
	int encoded;
	void *mask_data; /* with alpha_mask: malloc'd (free()), width x height 8-bit, or PNG bytes */
	size_t mask_len;
	int orig_width; /* with probe: the size after orientation */
	int orig_height;
	int too_large; /* with probe: refused because of max_pixels */
	int direct;    /* decoded by codec.c's direct decoder */
	char err[DG_ERR_LEN];       /* as in dg_header */
	char codec_err[DG_ERR_LEN];
} dg_output;

int dg_init(void);

/* Whether dg_init succeeded in this copy of the library. */
int dg_initialised(void);

/* Around fork(), with no image being processed: occupy every idle libvips worker thread so that
 * none is left on libvips' free list for the child to wait on, then let them go (fork.c). */
void dg_fork_hold(void);
void dg_fork_release(void);

/* Turns off libvips' run-time code generation (liborc); see vips.c. */
void dg_no_jit(void);

/* Reads only the header of an encoded image, with the direct decoder when allowed and able
 * (with native, not for a grey image: the direct decoder makes RGB). */
int dg_read_header(const void *buf, size_t len, int direct, int native, dg_header *out);

/* Decodes, converts, resizes, crops and writes to C memory in one go. */
int dg_process(const void *buf, size_t len, const dg_params *p, dg_output *out);

/* The pending libvips error text (copied then cleared); release with dg_free_error. NULL if none.
 * The buffer is process-wide: vips.go reads it only while no other libvips call can run. */
char *dg_take_error(void);
void dg_clear_error(void);
void dg_free_error(char *s);

/* Introspection for leak tests. */
size_t dg_tracked_mem(void);
int dg_tracked_allocs(void);
int dg_object_count(void);

/* Test helper: encode 8-bit pixels with the libvips saver chosen by suffix (".webp", ".jpg", ...),
 * optionally converted from sRGB to a built-in ICC profile ("cmyk", "p3"), which is embedded
 * only when keep_profile. Returns a malloc'd buffer. */
int dg_test_encode(const void *pixels, int width, int height, int bands, const char *suffix,
		   const char *profile, int keep_profile, void **out, size_t *out_len);

#endif
