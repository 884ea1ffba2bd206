#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "encode.h"

/* libjpeg's default error handler calls exit(): jump back to the caller instead. */
typedef struct {
	struct jpeg_error_mgr mgr;
	jmp_buf jump;
} dg_jpeg_error;

static void
dg_jpeg_exit(j_common_ptr cinfo)
{
	longjmp(((dg_jpeg_error *) cinfo->err)->jump, 1);
}

int
dg_encode_jpeg(const uint8_t *rgb, int width, int height, int quality, void **out, size_t *len,
	       char *err, size_t errlen)
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
	c.input_components = 3;
	c.in_color_space = JCS_RGB;
	jpeg_set_defaults(&c);
	jpeg_set_quality(&c, quality, TRUE);
	/* No chroma subsampling at high quality, as libvips' jpegsave does from Q 90. */
	if (quality >= 90)
		c.comp_info[0].h_samp_factor = c.comp_info[0].v_samp_factor = 1;
	jpeg_start_compress(&c, TRUE);
	for (y = 0; y < height; y++) {
		JSAMPROW row = (JSAMPROW) (rgb + (size_t) y * width * 3);

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
