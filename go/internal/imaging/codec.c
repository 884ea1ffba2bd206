#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "codec.h"
#include "prescan.h"
#include "vips.h"

/* libjpeg's default error handler calls exit(): jump back to the caller instead. */
typedef struct {
	struct jpeg_error_mgr mgr;
	jmp_buf jump;
	int warned;
} dg_jpeg_error;

static void
dg_jpeg_exit(j_common_ptr cinfo)
{
	longjmp(((dg_jpeg_error *) cinfo->err)->jump, 1);
}

/* Level -1 is a warning (corrupt data, premature end); higher levels are trace messages. */
static void
dg_jpeg_message(j_common_ptr cinfo, int level)
{
	if (level < 0)
		((dg_jpeg_error *) cinfo->err)->warned = 1;
}

int
dg_encode_jpeg(const uint8_t *pixels, int width, int height, int bands, int quality, void **out,
	       size_t *len, char *err, size_t errlen)
{
	struct jpeg_compress_struct c;
	dg_jpeg_error e;
	unsigned char *buf = NULL;
	unsigned long size = 0;
	int y;

	c.err = jpeg_std_error(&e.mgr);
	e.mgr.error_exit = dg_jpeg_exit;
	if (setjmp(e.jump)) {
		e.mgr.format_message((j_common_ptr) &c, err);
		jpeg_destroy_compress(&c);
		free(buf);
		return -1;
	}
	jpeg_create_compress(&c);
	jpeg_mem_dest(&c, &buf, &size);
	c.image_width = width;
	c.image_height = height;
	c.input_components = bands == 1 ? 1 : 3;
	c.in_color_space = bands == 1 ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(&c);
	jpeg_set_quality(&c, quality, TRUE);
	/* No chroma subsampling at high quality, as libvips' jpegsave does from Q 90. */
	if (quality >= 90)
		c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = 1;
	jpeg_start_compress(&c, TRUE);
	for (y = 0; y < height; y++) {
		JSAMPROW row = (JSAMPROW) (pixels + (size_t) y * width * c.input_components);

		jpeg_write_scanlines(&c, &row, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	(void) errlen;
	*out = buf;
	*len = size;
	return 0;
}

int
dg_encode_png(const uint8_t *pixels, int width, int height, int bands, void **out, size_t *len,
	      char *err, size_t errlen)
{
	png_image im;
	png_alloc_size_t size = 0;
	void *buf;

	memset(&im, 0, sizeof(im));
	im.version = PNG_IMAGE_VERSION;
	im.width = width;
	im.height = height;
	im.format = bands == 1 ? PNG_FORMAT_GRAY : bands == 2 ? PNG_FORMAT_GA :
		    bands == 4 ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
	if (!png_image_write_get_memory_size(im, size, 0, pixels, 0, NULL) || !(buf = malloc(size))) {
		snprintf(err, errlen, "png: %s", im.message[0] ? im.message : "out of memory");
		png_image_free(&im);
		return -1;
	}
	if (!png_image_write_to_memory(&im, buf, &size, 0, pixels, 0, NULL)) {
		snprintf(err, errlen, "png: %s", im.message);
		free(buf);
		return -1;
	}
	*out = buf;
	*len = size;
	return 0;
}

/* libpng's simplified writer takes 16-bit samples as linear light (it would write a gamma of 1
 * and premultiply the alpha): 16-bit images go through the full API instead. */
typedef struct {
	uint8_t *data;
	size_t len, cap;
	int failed;
} dg_png_buf;

static void
dg_png_write(png_structp png, png_bytep data, png_size_t n)
{
	dg_png_buf *b = png_get_io_ptr(png);
	uint8_t *grown;

	if (b->failed)
		return;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;

		while (cap < b->len + n)
			cap *= 2;
		if (!(grown = realloc(b->data, cap))) {
			b->failed = 1;
			return;
		}
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, n);
	b->len += n;
}

static void
dg_png_flush(png_structp png)
{
	(void) png;
}

static void
dg_png_error(png_structp png, png_const_charp msg)
{
	snprintf(png_get_error_ptr(png), DG_ENCODE_ERR_LEN, "png: %s", msg);
	png_longjmp(png, 1);
}

static void
dg_png_warning(png_structp png, png_const_charp msg)
{
	(void) png;
	(void) msg;
}

int
dg_encode_png16(const uint16_t *pixels, int width, int height, int bands, void **out, size_t *len,
		char *err, size_t errlen)
{
	static const int types[] = { PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
				     PNG_COLOR_TYPE_RGB_ALPHA };
	char msg[DG_ENCODE_ERR_LEN] = "png: out of memory";
	dg_png_buf b = { 0 };
	png_structp png;
	png_infop info = NULL;
	int y;

	if (bands < 1 || bands > 4) {
		snprintf(err, errlen, "png: %d bands", bands);
		return -1;
	}
	if (!(png = png_create_write_struct(PNG_LIBPNG_VER_STRING, msg, dg_png_error, dg_png_warning)) ||
	    !(info = png_create_info_struct(png))) {
		png_destroy_write_struct(&png, NULL);
		snprintf(err, errlen, "%s", msg);
		return -1;
	}
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_write_struct(&png, &info);
		free(b.data);
		snprintf(err, errlen, "%s", msg);
		return -1;
	}
	png_set_write_fn(png, &b, dg_png_write, dg_png_flush);
	png_set_IHDR(png, info, width, height, 16, types[bands - 1], PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	{
		/* PNG stores samples big-endian; ours are in host order. */
		const uint16_t one = 1;

		if (*(const uint8_t *) &one == 1)
			png_set_swap(png);
	}
	for (y = 0; y < height; y++)
		png_write_row(png, (png_const_bytep) (pixels + (size_t) y * width * bands));
	png_write_end(png, info);
	png_destroy_write_struct(&png, &info);
	if (b.failed) {
		free(b.data);
		snprintf(err, errlen, "png: out of memory");
		return -1;
	}
	*out = b.data;
	*len = b.len;
	return 0;
}

/* ---- Direct decoding (see codec.h) ---- */

static unsigned
dg_get16(const uint8_t *p, int le)
{
	return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1];
}

static uint32_t
dg_get32(const uint8_t *p, int le)
{
	return le ? (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 |
			    (uint32_t) p[3] << 24 :
		    (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

/* The orientation tag of IFD0 in an APP1 payload: 1..8 as written, 0 when the payload is not
 * EXIF or has no orientation, -1 when it cannot be read (then libvips, through libexif, decides). */
static int
dg_exif_orientation(const uint8_t *p, size_t n)
{
	size_t ifd, count, i;
	int le;

	if (n < 6 || memcmp(p, "Exif\0\0", 6))
		return 0;
	p += 6;
	n -= 6;
	if (n < 8)
		return -1;
	if (!memcmp(p, "II*\0", 4))
		le = 1;
	else if (!memcmp(p, "MM\0*", 4))
		le = 0;
	else
		return -1;
	ifd = dg_get32(p + 4, le);
	if (ifd < 8 || ifd > n - 2)
		return -1;
	count = dg_get16(p + ifd, le);
	if (count > (n - ifd - 2) / 12)
		return -1;
	for (i = 0; i < count; i++) {
		const uint8_t *e = p + ifd + 2 + 12 * i;

		if (dg_get16(e, le) != 0x0112)
			continue;
		if (dg_get16(e + 2, le) != 3 || dg_get32(e + 4, le) != 1)
			return -1;
		return (int) dg_get16(e + 8, le);
	}
	return 0;
}

/* Whether the markers allow the direct path: no ICC profile, one EXIF block at most, and no
 * orientation other than 1. */
static int
dg_jpeg_plain(j_decompress_ptr d)
{
	jpeg_saved_marker_ptr m;
	int exif = 0;

	for (m = d->marker_list; m; m = m->next) {
		if (m->marker == JPEG_APP0 + 2 && m->data_length >= 12 &&
		    !memcmp(m->data, "ICC_PROFILE\0", 12))
			return 0;
		if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 &&
		    !memcmp(m->data, "Exif\0\0", 6)) {
			int o = dg_exif_orientation(m->data, m->data_length);

			if (exif++ || (o != 0 && o != 1))
				return 0;
		}
	}
	switch (d->jpeg_color_space) {
	case JCS_YCbCr:
	case JCS_RGB:
		return d->num_components == 3;
	case JCS_GRAYSCALE:
		return d->num_components == 1;
	default: /* CMYK and YCCK need colour management */
		return 0;
	}
}

static int
dg_too_many(long long w, long long h, long long limit)
{
	return limit > 0 && w * h > limit;
}

static int
dg_jpeg_direct(const void *buf, size_t len, int shrink, int decode, long long max_pixels,
	       long long max_decoded, dg_raw *out, char *err, size_t errlen)
{
	struct jpeg_decompress_struct d;
	dg_jpeg_error e;
	uint8_t *volatile pixels = NULL;
	int ret = DG_DIRECT_NO;

	d.err = jpeg_std_error(&e.mgr);
	e.mgr.error_exit = dg_jpeg_exit;
	e.mgr.emit_message = dg_jpeg_message;
	e.warned = 0;
	if (setjmp(e.jump)) {
		char msg[JMSG_LENGTH_MAX];

		e.mgr.format_message((j_common_ptr) &d, msg);
		snprintf(err, errlen, "jpeg: %s", msg);
		jpeg_destroy_decompress(&d);
		free(pixels);
		return DG_DIRECT_NO;
	}
	jpeg_create_decompress(&d);
	jpeg_mem_src(&d, (const unsigned char *) buf, len);
	/* Saved markers are the only allocation sized by the file rather than the image: at most
	 * 64 KiB each (a segment length is 16 bits), and only for segments the file holds
	 * (dg_prescan checked every length up to the first scan). */
	jpeg_save_markers(&d, JPEG_APP0 + 1, 0xFFFF);
	jpeg_save_markers(&d, JPEG_APP0 + 2, 12);
	if (jpeg_read_header(&d, TRUE) != JPEG_HEADER_OK || e.warned || !dg_jpeg_plain(&d) ||
	    d.image_width == 0 || d.image_height == 0)
		goto done;
	out->full_width = d.image_width;
	out->full_height = d.image_height;
	out->grey = d.jpeg_color_space == JCS_GRAYSCALE;
	if (dg_too_many(d.image_width, d.image_height, max_pixels)) {
		ret = DG_DIRECT_TOO_LARGE;
		goto done;
	}
	d.scale_num = 1;
	d.scale_denom = shrink;
	d.out_color_space = JCS_RGB;
	jpeg_calc_output_dimensions(&d);
	out->width = d.output_width;
	out->height = d.output_height;
	if (!decode) {
		ret = DG_DIRECT_OK;
		goto done;
	}
	if (dg_too_many(d.output_width, d.output_height, max_decoded) ||
	    !(pixels = malloc((size_t) d.output_width * d.output_height * 3)))
		goto done;
	jpeg_start_decompress(&d);
	while (d.output_scanline < d.output_height) {
		JSAMPROW row = pixels + (size_t) d.output_scanline * d.output_width * 3;

		jpeg_read_scanlines(&d, &row, 1);
	}
	jpeg_finish_decompress(&d);
	if (e.warned)
		goto done;
	/* libvips' shrink-on-load rounds the size down, dropping libjpeg's partial last column and
	 * row: do the same, so both paths agree to the pixel. */
	if (shrink > 1 && (out->width != (int) (d.image_width / shrink) ||
			   out->height != (int) (d.image_height / shrink))) {
		int y;

		out->width = d.image_width / shrink;
		out->height = d.image_height / shrink;
		for (y = 1; y < out->height; y++)
			memmove(pixels + (size_t) y * out->width * 3,
				pixels + (size_t) y * d.output_width * 3, (size_t) out->width * 3);
	}
	out->pixels = pixels;
	pixels = NULL;
	ret = DG_DIRECT_OK;
done:
	jpeg_destroy_decompress(&d);
	free(pixels);
	return ret;
}

typedef struct {
	const uint8_t *buf;
	size_t len;
	size_t pos;
	int warned;
	char *err;
	size_t errlen;
} dg_png_source;

static void
dg_png_read(png_structp png, png_bytep dst, size_t n)
{
	dg_png_source *src = png_get_io_ptr(png);

	if (n > src->len - src->pos)
		png_error(png, "truncated");
	memcpy(dst, src->buf + src->pos, n);
	src->pos += n;
}

static void
dg_png_fail(png_structp png, png_const_charp msg)
{
	dg_png_source *src = png_get_io_ptr(png);

	/* Before png_set_read_fn the io pointer is not ours yet. */
	if (src && src->err)
		snprintf(src->err, src->errlen, "png: %s", msg);
	png_longjmp(png, 1);
}

static void
dg_png_warn(png_structp png, png_const_charp msg)
{
	(void) msg;
	((dg_png_source *) png_get_io_ptr(png))->warned = 1;
}

/* libpng's own limits, below its defaults: datago reads no text, palettes or unknown chunks,
 * and dg_prescan has already removed them and checked every length; these bound what is left.
 * An iCCP profile (inflated) is the largest allocation a chunk can still ask for. */
#define DG_PNG_CHUNK_MALLOC_MAX DG_MAX_ICC_PROFILE
#define DG_PNG_CHUNK_CACHE_MAX 32
#define DG_PNG_MAX_SIDE 0x7FFFFFFF /* sides are bounded by max_pixels instead */

static int
dg_png_direct(const void *buf, size_t len, int decode, long long max_pixels,
	      long long max_decoded, dg_raw *out, char *err, size_t errlen)
{
	dg_png_source src = { buf, len, 0, 0, err, errlen };
	png_structp png;
	png_infop info = NULL;
	uint8_t *volatile pixels = NULL;
	png_bytep *volatile rows = NULL;
	png_uint_32 w, h, y;
	int depth, type, ret = DG_DIRECT_NO;

	if (!(png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, dg_png_fail, dg_png_warn)) ||
	    !(info = png_create_info_struct(png))) {
		png_destroy_read_struct(&png, NULL, NULL);
		return DG_DIRECT_NO;
	}
	if (setjmp(png_jmpbuf(png))) {
		png_destroy_read_struct(&png, &info, NULL);
		free(rows);
		free(pixels);
		return DG_DIRECT_NO;
	}
	png_set_read_fn(png, &src, dg_png_read);
	png_set_chunk_malloc_max(png, DG_PNG_CHUNK_MALLOC_MAX);
	png_set_chunk_cache_max(png, DG_PNG_CHUNK_CACHE_MAX);
	png_set_user_limits(png, DG_PNG_MAX_SIDE, DG_PNG_MAX_SIDE);
	png_read_info(png, info);
	if (!png_get_IHDR(png, info, &w, &h, &depth, &type, NULL, NULL, NULL) || src.warned ||
	    depth > 8 || (type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS) ||
	    png_get_valid(png, info, PNG_INFO_iCCP) || png_get_valid(png, info, PNG_INFO_eXIf))
		goto done;
	out->width = out->full_width = w;
	out->height = out->full_height = h;
	out->grey = type == PNG_COLOR_TYPE_GRAY;
	if (dg_too_many(w, h, max_pixels)) {
		ret = DG_DIRECT_TOO_LARGE;
		goto done;
	}
	if (!decode) {
		ret = DG_DIRECT_OK;
		goto done;
	}
	if (dg_too_many(w, h, max_decoded) || !(pixels = malloc((size_t) w * h * 3)) ||
	    !(rows = malloc(sizeof(png_bytep) * h)))
		goto done;
	if (type == PNG_COLOR_TYPE_PALETTE)
		png_set_palette_to_rgb(png);
	if (type == PNG_COLOR_TYPE_GRAY) {
		png_set_expand_gray_1_2_4_to_8(png);
		png_set_gray_to_rgb(png);
	}
	png_set_interlace_handling(png);
	png_read_update_info(png, info);
	if (png_get_rowbytes(png, info) != (size_t) w * 3)
		goto done;
	for (y = 0; y < h; y++)
		rows[y] = pixels + (size_t) y * w * 3;
	png_read_image(png, rows);
	/* Chunks after the pixels may still carry an orientation. */
	png_read_end(png, info);
	if (src.warned || png_get_valid(png, info, PNG_INFO_eXIf))
		goto done;
	out->pixels = pixels;
	pixels = NULL;
	ret = DG_DIRECT_OK;
done:
	png_destroy_read_struct(&png, &info, NULL);
	free(rows);
	free(pixels);
	return ret;
}

int
dg_direct_header(const void *buf, size_t len, int loader, dg_raw *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	switch (loader) {
	case DG_LOADER_JPEG:
		return dg_jpeg_direct(buf, len, 1, 0, 0, 0, out, err, errlen);
	case DG_LOADER_PNG:
		return dg_png_direct(buf, len, 0, 0, 0, out, err, errlen);
	default:
		return DG_DIRECT_NO;
	}
}

int
dg_direct_decode(const void *buf, size_t len, int loader, int shrink, long long max_pixels,
		 long long max_decoded, dg_raw *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	switch (loader) {
	case DG_LOADER_JPEG:
		return dg_jpeg_direct(buf, len, shrink, 1, max_pixels, max_decoded, out, err, errlen);
	case DG_LOADER_PNG:
		return shrink == 1 ? dg_png_direct(buf, len, 1, max_pixels, max_decoded, out, err,
						   errlen) :
				     DG_DIRECT_NO;
	default:
		return DG_DIRECT_NO;
	}
}

void
dg_codec_error(const void *buf, size_t len, int loader, long long max_decoded, char *err,
	       size_t errlen)
{
	dg_raw raw;

	err[0] = 0;
	if (dg_direct_decode(buf, len, loader, 1, 0, max_decoded, &raw, err, errlen) == DG_DIRECT_OK)
		free(raw.pixels);
}
