#include "encode.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <webp/encode.h>

#include "codec.h"

static int
dg_encode_webp(const uint8_t *pixels, int width, int height, int bands, int quality, void **out,
	       size_t *len, char *err, size_t errlen)
{
	const uint8_t *src = pixels;
	uint8_t *expanded = NULL, *webp = NULL;
	size_t n, i, size;

	/* libwebp encodes RGB or RGBA only: grey (with alpha) is spread to the colour bands. */
	if (bands == 1 || bands == 2) {
		int ob = bands == 1 ? 3 : 4;

		n = (size_t) width * height;
		if (!(expanded = malloc(n * ob))) {
			snprintf(err, errlen, "webp: out of memory");
			return -1;
		}
		for (i = 0; i < n; i++) {
			uint8_t g = pixels[i * bands];

			expanded[i * ob] = expanded[i * ob + 1] = expanded[i * ob + 2] = g;
			if (ob == 4)
				expanded[i * ob + 3] = pixels[i * bands + 1];
		}
		src = expanded;
		bands = ob;
	}
	if (bands == 4)
		size = WebPEncodeRGBA(src, width, height, width * 4, (float) quality, &webp);
	else
		size = WebPEncodeRGB(src, width, height, width * 3, (float) quality, &webp);
	free(expanded);
	if (size == 0 || !webp) {
		snprintf(err, errlen, "webp: cannot encode a %dx%d image", width, height);
		WebPFree(webp);
		return -1;
	}
	/* The caller releases the output with free(), libwebp's with WebPFree: copy. */
	if (!(*out = malloc(size))) {
		WebPFree(webp);
		snprintf(err, errlen, "webp: out of memory");
		return -1;
	}
	memcpy(*out, webp, size);
	WebPFree(webp);
	*len = size;
	return 0;
}

/* 16-bit to 8-bit as Pillow reads a 16-bit PNG (the high byte), for the 8-bit-only encoders. */
static uint8_t *
dg_reduce16(const uint16_t *pixels, size_t n)
{
	uint8_t *out = malloc(n ? n : 1);
	size_t i;

	if (out)
		for (i = 0; i < n; i++)
			out[i] = pixels[i] >> 8;
	return out;
}

static int
dg_encode8(const uint8_t *pixels, int width, int height, int bands, int format, int quality,
	   void **out, size_t *len, char *err, size_t errlen)
{
	switch (format) {
	case DG_ENC_WEBP:
		return dg_encode_webp(pixels, width, height, bands, quality, out, len, err, errlen);
	case DG_ENC_AUTO:
		if (bands == 3)
			return dg_encode_jpeg(pixels, width, height, 3, quality, out, len, err, errlen);
		break;
	case DG_ENC_JPEG:
		if (bands == 1 || bands == 3)
			return dg_encode_jpeg(pixels, width, height, bands, quality, out, len, err,
					      errlen);
		break;
	}
	return dg_encode_png(pixels, width, height, bands, out, len, err, errlen);
}

int
dg_encode(const void *pixels, int width, int height, int bands, int depth, int format, int quality,
	  void **out, size_t *len, int *out_depth, char *err, size_t errlen)
{
	uint8_t *reduced;
	int r;

	*out_depth = 8;
	if (depth != 16)
		return dg_encode8(pixels, width, height, bands, format, quality, out, len, err, errlen);
	/* Where dg_encode8 would write PNG, PNG keeps the 16 bits. */
	if (format == DG_ENC_PNG || (format == DG_ENC_AUTO && bands != 3) ||
	    (format == DG_ENC_JPEG && bands != 1 && bands != 3)) {
		*out_depth = 16;
		return dg_encode_png16(pixels, width, height, bands, out, len, err, errlen);
	}
	if (!(reduced = dg_reduce16(pixels, (size_t) width * height * bands))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r = dg_encode8(reduced, width, height, bands, format, quality, out, len, err, errlen);
	free(reduced);
	return r;
}
