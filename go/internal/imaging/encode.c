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

int
dg_encode(const uint8_t *pixels, int width, int height, int bands, int format, int quality,
	  void **out, size_t *len, char *err, size_t errlen)
{
	switch (format) {
	case DG_ENC_WEBP:
		return dg_encode_webp(pixels, width, height, bands, quality, out, len, err, errlen);
	case DG_ENC_JPEG:
	case DG_ENC_AUTO:
		if (bands == 3)
			return dg_encode_jpeg(pixels, width, height, quality, out, len, err, errlen);
		break;
	}
	return dg_encode_png(pixels, width, height, bands, out, len, err, errlen);
}
