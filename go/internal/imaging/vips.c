#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>
#include <vips/vector.h>
#include <webp/decode.h>

#include "codec.h"
#include "encode.h"
#include "resample.h"
#include "vips.h"

/* Interpolators are stateless: one shared instance, made at init, serves every thread. */
static VipsInterpolate *dg_bicubic;
static int dg_ready;

static void
dg_drop_log(const char *domain, GLogLevelFlags level, const char *message, gpointer data)
{
	(void) domain;
	(void) level;
	(void) message;
	(void) data;
}

void
dg_no_jit(void)
{
	/* liborc, which libvips uses for SIMD, writes the code it generates into a MAP_SHARED
	 * mapping: after fork() parent and child share it, and code the child generated would
	 * overwrite code the parent runs. A forked child therefore runs without it. */
	vips_vector_set_enabled(FALSE);
}

int
dg_init(void)
{
	if (VIPS_INIT("datago"))
		return -1;
	/* Every image is seen once: caching operations would only pin memory (and, for buffer
	 * loads, references to the caller's bytes). */
	vips_cache_set_max(0);
	/* Parallelism comes from the caller's goroutines: one libvips worker per image. */
	vips_concurrency_set(1);
	if (!(dg_bicubic = vips_interpolate_new("bicubic")))
		return -1;
	/* Bad samples are counted and reported by datago; libvips' own warnings on stderr would
	 * repeat them in every training log. Errors still reach us through the error buffer. */
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING, dg_drop_log, NULL);
	dg_ready = 1;
	return 0;
}

int
dg_initialised(void)
{
	return dg_ready;
}

char *
dg_take_error(void)
{
	/* Copy and clear under libvips' lock: the buffer is process-wide. */
	return vips_error_buffer_copy();
}

void
dg_clear_error(void)
{
	vips_error_clear();
}

void
dg_free_error(char *s)
{
	g_free(s);
}

/* Every intermediate image is parked in an array owned by ctx, so unreffing ctx releases them
 * all on every path. */
static VipsImage **
dg_slots(VipsObject *ctx, int n)
{
	return (VipsImage **) vips_object_local_array(ctx, n);
}

static VipsObject *
dg_context(void)
{
	return VIPS_OBJECT(vips_image_new());
}

/* The loader for buf, from its signature. Calling the loader directly skips libvips' search,
 * which asks every loader in turn whether it recognises the bytes, on every image. */
static int
dg_sniff(const unsigned char *b, size_t len)
{
	if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
		return DG_LOADER_JPEG;
	if (len >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8))
		return DG_LOADER_PNG;
	if (len >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4))
		return DG_LOADER_WEBP;
	return DG_LOADER_OTHER;
}

static void *
dg_copy_meta(VipsImage *from, const char *name, GValue *value, void *to)
{
	(void) from;
	/* Only metadata: the header fields (width, bands, ...) are to's own already. */
	if (!vips_image_get_typeof((VipsImage *) to, name))
		vips_image_set((VipsImage *) to, name, value);
	return NULL;
}

/* The pixels of a still WebP whose header libvips has read into hdr. libvips' WebP loader
 * decodes into a memory image, which it fills on its worker threads; after fork() a child
 * inherits the list of the parent's idle workers but not the threads, and waits forever for
 * one of them. Decoding with libwebp here, on the calling thread, as libvips does (RGBA, scaled
 * by libwebp to the header's size, alpha dropped when the file declares none), gives the same
 * pixels. The result is the memory image with hdr's metadata (ICC profile, EXIF, orientation). */
static VipsImage *
dg_webp_pixels(VipsObject *ctx, VipsImage *hdr, const void *buf, size_t len, int shrink)
{
	VipsImage **t = dg_slots(ctx, 2);
	WebPDecoderConfig config;

	if (!WebPInitDecoderConfig(&config))
		return NULL;
	t[0] = vips_image_new_memory();
	vips_image_init_fields(t[0], hdr->Xsize, hdr->Ysize, 4, VIPS_FORMAT_UCHAR,
			       VIPS_CODING_NONE, VIPS_INTERPRETATION_sRGB, hdr->Xres, hdr->Yres);
	if (vips_image_write_prepare(t[0]))
		return NULL;
	config.output.colorspace = MODE_RGBA;
	config.output.is_external_memory = 1;
	config.output.u.RGBA.rgba = VIPS_IMAGE_ADDR(t[0], 0, 0);
	config.output.u.RGBA.stride = VIPS_IMAGE_SIZEOF_LINE(t[0]);
	config.output.u.RGBA.size = VIPS_IMAGE_SIZEOF_IMAGE(t[0]);
	/* As libvips: libwebp's scaler only with a shrink (it would resample even at 1:1). */
	if (shrink > 1) {
		config.options.use_scaling = 1;
		config.options.scaled_width = hdr->Xsize;
		config.options.scaled_height = hdr->Ysize;
	}
	if (WebPDecode(buf, len, &config) != VP8_STATUS_OK) {
		vips_error("webp2vips", "%s", "unable to read pixels");
		return NULL;
	}
	vips_image_map(hdr, dg_copy_meta, t[0]);
	if (hdr->Bands == 4)
		return t[0];
	return vips_extract_band(t[0], &t[1], 0, "n", hdr->Bands, NULL) ? NULL : t[1];
}

static VipsImage *
dg_open(VipsObject *ctx, const void *buf, size_t len, int loader, int shrink, char *err)
{
	VipsImage **t = dg_slots(ctx, 1);
	VipsAccess access = VIPS_ACCESS_SEQUENTIAL;
	/* Pillow refuses truncated files too; other decoder complaints are tolerated. */
	VipsFailOn fail_on = VIPS_FAIL_ON_TRUNCATED;
	void *b = (void *) buf;
	int r;

	switch (loader) {
	case DG_LOADER_JPEG:
		r = vips_jpegload_buffer(b, len, &t[0], "shrink", shrink, "access", access, "fail_on",
					 fail_on, NULL);
		break;
	case DG_LOADER_WEBP:
		r = vips_webpload_buffer(b, len, &t[0], "scale", 1.0 / shrink, "access", access,
					 "fail_on", fail_on, NULL);
		break;
	case DG_LOADER_PNG:
		r = vips_pngload_buffer(b, len, &t[0], "access", access, "fail_on", fail_on, NULL);
		break;
	default:
		/* Other loaders (GIF, TIFF, SVG through librsvg, ImageMagick, ...) are not offered
		 * untrusted bytes: datago serves JPEG, PNG and WebP only. */
		snprintf(err, DG_ERR_LEN, "not a JPEG, PNG, WebP, GIF or BMP image");
		r = -1;
	}
	return r ? NULL : t[0];
}

static void
dg_oriented_size(VipsImage *im, int *width, int *height)
{
	int swap = vips_image_get_orientation_swap(im);

	*width = swap ? im->Ysize : im->Xsize;
	*height = swap ? im->Xsize : im->Ysize;
}

int
dg_read_header(const void *buf, size_t len, int direct, int native, dg_header *out)
{
	VipsObject *ctx;
	VipsImage *im;
	dg_raw raw;
	int ret = -1;

	memset(out, 0, sizeof(*out));
	out->loader = dg_sniff(buf, len);
	if (direct && dg_direct_header(buf, len, out->loader, &raw, out->codec_err,
				       sizeof(out->codec_err)) == DG_DIRECT_OK &&
	    !(native && raw.grey)) {
		out->width = raw.full_width;
		out->height = raw.full_height;
		out->orientation = 1;
		out->direct = 1;
		return 0;
	}
	ctx = dg_context();
	/* Only the header is parsed here; pixels are decoded on first access, which never comes. */
	if ((im = dg_open(ctx, buf, len, out->loader, 1, out->err))) {
		out->orientation = vips_image_get_orientation(im);
		dg_oriented_size(im, &out->width, &out->height);
		ret = 0;
	}
	g_object_unref(ctx);
	return ret;
}

static int
dg_icc_to_srgb(VipsImage *in, VipsImage **out, int cmyk, int depth)
{
	const void *data;
	size_t len;
	/* A profile that does not fit the pixels (wrong colour space) is ignored rather than fatal. */
	gboolean embedded = vips_image_get_typeof(in, VIPS_META_ICC_NAME) &&
			    !vips_image_get_blob(in, VIPS_META_ICC_NAME, &data, &len) &&
			    vips_icc_is_compatible_profile(in, data, len);

	/* Without lcms, pixels are taken as sRGB (and CMYK fails further on). */
	if ((!embedded && !cmyk) || !vips_icc_present()) {
		*out = in;
		g_object_ref(in);
		return 0;
	}
	/* Without an embedded profile, CMYK goes through libvips' built-in fallback CMYK profile.
	 * Perceptual intent is what Pillow's ImageCms uses by default. */
	return vips_icc_transform(in, out, "srgb", "embedded", embedded, "input_profile",
				  cmyk ? "cmyk" : "srgb", "intent", VIPS_INTENT_PERCEPTUAL, "depth", depth,
				  NULL);
}

/* The colour space the pixels are really in, trusting the loader's label only when it is
 * consistent with the band count and the sample format. */
static VipsInterpretation
dg_source_space(VipsImage *in)
{
	VipsInterpretation s = vips_image_guess_interpretation(in);
	int wide = in->BandFmt == VIPS_FORMAT_USHORT;

	if (in->Bands == 1) {
		if (s == VIPS_INTERPRETATION_GREY16 || (s == VIPS_INTERPRETATION_B_W && !wide))
			return s;
		return wide ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_B_W;
	}
	switch (s) {
	case VIPS_INTERPRETATION_sRGB:
	case VIPS_INTERPRETATION_RGB16:
		return wide ? VIPS_INTERPRETATION_RGB16 : VIPS_INTERPRETATION_sRGB;
	case VIPS_INTERPRETATION_scRGB:
	case VIPS_INTERPRETATION_XYZ:
	case VIPS_INTERPRETATION_LAB:
	case VIPS_INTERPRETATION_LCH:
	case VIPS_INTERPRETATION_CMC:
	case VIPS_INTERPRETATION_LABS:
	case VIPS_INTERPRETATION_YXY:
	case VIPS_INTERPRETATION_HSV:
		return s;
	default:
		return wide ? VIPS_INTERPRETATION_RGB16 : VIPS_INTERPRETATION_sRGB;
	}
}

/* The flatten background for bands colour bands at scale (257 for 16-bit): a grey image is
 * flattened onto the background's luma (ITU-R 601, as Pillow's convert("L")). */
static VipsArrayDouble *
dg_background(int bands, const double *bg, double scale)
{
	if (bands == 1)
		return vips_array_double_newv(
			1, (0.299 * bg[0] + 0.587 * bg[1] + 0.114 * bg[2]) * scale);
	return vips_array_double_newv(3, bg[0] * scale, bg[1] * scale, bg[2] * scale);
}

/* To 8-bit sRGB (3 bands) or, for masks, 8-bit greyscale (1 band), with alpha flattened onto
 * p->background (image_config.alpha_background), or dropped for masks. With p->keep_alpha, 8-bit
 * RGBA instead: the image's alpha, or an opaque one. With p->native (image_to_rgb8 false), grey
 * stays one band and 16-bit samples stay 16-bit, and keep_alpha keeps the alpha of the images
 * that have one (LA, RGBA) without adding any. p->alpha_mask keeps the alpha of the images that
 * have one, for dg_split_alpha to flatten after the resize. */
static VipsImage *
dg_colour(VipsObject *ctx, VipsImage *in, int mask, const dg_params *p)
{
	VipsImage **t = dg_slots(ctx, 11);
	int cmyk = vips_image_guess_interpretation(in) == VIPS_INTERPRETATION_CMYK && in->Bands >= 4;
	int ncolour = cmyk ? 4 : in->Bands >= 3 ? 3 : 1;
	int native = p->native && !mask;
	int wide = native && !cmyk && in->BandFmt == VIPS_FORMAT_USHORT;
	int bands = mask || (native && ncolour == 1) ? 1 : 3;
	VipsBandFormat fmt = wide ? VIPS_FORMAT_USHORT : VIPS_FORMAT_UCHAR;
	VipsInterpretation space = bands == 1 ? (wide ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_B_W) :
						(wide ? VIPS_INTERPRETATION_RGB16 : VIPS_INTERPRETATION_sRGB);
	double max_alpha = wide ? 65535.0 : 255.0;
	int keep = !mask && (p->keep_alpha || p->alpha_mask);
	int opaque = !mask && p->keep_alpha && !native;
	VipsImage *colour = in;
	VipsImage *alpha = NULL;

	/* Alpha is handled on its own: its scale depends on the sample format, not the colour
	 * space, and it must not go through colour management. */
	if (in->Bands > ncolour) {
		if (vips_extract_band(in, &t[0], 0, "n", ncolour, NULL))
			return NULL;
		colour = t[0];
		if (!mask) {
			if (vips_extract_band(in, &t[1], ncolour, NULL))
				return NULL;
			alpha = t[1];
		}
	}

	/* Masks are labels, not colours: only CMYK (meaningless otherwise) is colour managed. Grey
	 * profiles are left alone, like Pillow does. */
	if (cmyk || (ncolour == 3 && !mask)) {
		if (dg_icc_to_srgb(colour, &t[2], cmyk, wide ? 16 : 8))
			return NULL;
		colour = t[2];
	}

	/* Already in the output space, as most images are: every libvips operation costs a few
	 * microseconds of object set-up, which small images feel. */
	if (colour->BandFmt != fmt || colour->Bands != bands || dg_source_space(colour) != space) {
		if (vips_colourspace(colour, &t[3], space, "source_space", dg_source_space(colour),
				     NULL))
			return NULL;
		colour = t[3];
	}
	if (colour->BandFmt != fmt) {
		if (vips_cast(colour, &t[4], fmt, NULL))
			return NULL;
		colour = t[4];
	}
	if (colour->Bands != bands) {
		if (colour->Bands == 1) {
			VipsImage *grey[3] = {colour, colour, colour};

			if (vips_bandjoin(grey, &t[5], 3, NULL))
				return NULL;
		} else if (vips_extract_band(colour, &t[5], 0, "n", bands, NULL))
			return NULL;
		colour = t[5];
	}

	if (alpha) {
		VipsImage *joined[2];
		VipsArrayDouble *background;
		double scale = wide ? 257.0 : 1.0;
		int r;

		if (alpha->BandFmt != fmt) {
			/* shift maps 16-bit 65535 to 255 (>> 8), and back; other formats are clamped. */
			int integer = alpha->BandFmt == VIPS_FORMAT_USHORT ||
				      alpha->BandFmt == VIPS_FORMAT_UCHAR;

			if (vips_cast(alpha, &t[6], fmt, "shift", integer, NULL))
				return NULL;
			alpha = t[6];
		}
		joined[0] = colour;
		joined[1] = alpha;
		if (vips_bandjoin(joined, &t[7], 2, NULL))
			return NULL;
		if (keep)
			return t[7];
		background = dg_background(bands, p->background, scale);
		r = vips_flatten(t[7], &t[8], "background", background, "max_alpha", max_alpha, NULL);
		vips_area_unref(VIPS_AREA(background));
		if (r)
			return NULL;
		colour = t[8];
		if (colour->BandFmt != fmt) {
			if (vips_cast(colour, &t[9], fmt, NULL))
				return NULL;
			colour = t[9];
		}
	} else if (opaque) {
		if (vips_bandjoin_const1(colour, &t[10], max_alpha, NULL))
			return NULL;
		colour = t[10];
	}
	return colour;
}

/* Enlarges in to exactly width x height with sample centres aligned (output pixel x samples input
 * (x + 0.5) / scale - 0.5, as Pillow does). libvips 8.14's vips_resize enlarges through vips_affine
 * without the output half-pixel offset, which shifts the image by half an output pixel. */
static VipsImage *
dg_enlarge(VipsObject *ctx, VipsImage *in, int width, int height)
{
	VipsImage **t = dg_slots(ctx, 1);
	VipsArrayInt *area = vips_array_int_newv(4, 0, 0, width, height);
	int r;

	r = vips_affine(in, &t[0], (double) width / in->Xsize, 0.0, 0.0, (double) height / in->Ysize,
			"interpolate", dg_bicubic, "idx", 0.5, "idy", 0.5, "odx", -0.5, "ody", -0.5,
			"oarea", area, "extend", VIPS_EXTEND_COPY,
			/* Pixels are sampled, never mixed with their alpha: no (un)premultiply round trip. */
			"premultiplied", TRUE, NULL);
	vips_area_unref(VIPS_AREA(area));
	return r ? NULL : t[0];
}

static VipsImage *dg_copy_memory(VipsObject *ctx, VipsImage *in);

/* Reductions of images larger than this many pixels go through vips_resize, which streams them;
 * resample.c holds the whole input in memory. */
#define DG_MAX_RESAMPLE_INPUT (4LL << 20)

/* How many of its own pixels a decoded axis of size n stands for: libjpeg's shrink-on-load
 * drops the last partial block (libvips rounds the size down), so n pixels stand for full / s. */
static double
dg_extent(const dg_params *p, int n, int full)
{
	double e;

	if (p->shrink <= 1 || full <= 0)
		return n;
	e = (double) full / p->shrink;
	return e >= n && e < n + 1 ? e : n;
}

/* Resizes in (8-bit) with the Lanczos-3 of resample.c, computing only the crop. */
static VipsImage *
dg_resample_crop(VipsObject *ctx, VipsImage *in, const dg_params *p, char *err)
{
	VipsImage **t = dg_slots(ctx, 1);

	if (!(in = dg_copy_memory(ctx, in)))
		return NULL;
	t[0] = vips_image_new_memory();
	vips_image_init_fields(t[0], p->out_width, p->out_height, in->Bands, VIPS_FORMAT_UCHAR,
			       VIPS_CODING_NONE, in->Type, 1.0, 1.0);
	if (vips_image_write_prepare(t[0]))
		return NULL;
	if (dg_resample_lanczos_extent(VIPS_IMAGE_ADDR(in, 0, 0), in->Xsize, in->Ysize,
				       dg_extent(p, in->Xsize, p->full_width),
				       dg_extent(p, in->Ysize, p->full_height), in->Bands,
				       p->cover_width, p->cover_height, p->crop_left, p->crop_top,
				       p->out_width, p->out_height, VIPS_IMAGE_ADDR(t[0], 0, 0))) {
		snprintf(err, DG_ERR_LEN, "out of memory");
		return NULL;
	}
	return t[0];
}

/* Masks: nearest-neighbour at pixel centres over the same cover-and-crop mapping as the image
 * (resample.h), computing only the crop. libvips' nearest paths sample at pixel corners
 * (vips_resize's subsample keeps the top-left pixel of each block, vips_affine's nearest
 * interpolator floors), which put a mask's edges up to a pixel or more right of and below the
 * image's. Any band count and sample format: the conversion to 8-bit grey comes after. */
static VipsImage *
dg_nearest_crop(VipsObject *ctx, VipsImage *in, const dg_params *p, char *err)
{
	VipsImage **t = dg_slots(ctx, 1);

	if (!(in = dg_copy_memory(ctx, in)))
		return NULL;
	t[0] = vips_image_new_memory();
	vips_image_init_fields(t[0], p->out_width, p->out_height, in->Bands, in->BandFmt,
			       VIPS_CODING_NONE, in->Type, 1.0, 1.0);
	if (vips_image_write_prepare(t[0]))
		return NULL;
	if (dg_resample_nearest(VIPS_IMAGE_ADDR(in, 0, 0), in->Xsize, in->Ysize,
				VIPS_IMAGE_SIZEOF_PEL(in), p->cover_width, p->cover_height,
				p->crop_left, p->crop_top, p->out_width, p->out_height,
				VIPS_IMAGE_ADDR(t[0], 0, 0))) {
		snprintf(err, DG_ERR_LEN, "out of memory");
		return NULL;
	}
	return t[0];
}

static VipsImage *
dg_resize_crop(VipsObject *ctx, VipsImage *in, const dg_params *p, char *err)
{
	VipsImage **t = dg_slots(ctx, 3);
	double hscale = (double) p->cover_width / in->Xsize;
	double vscale = (double) p->cover_height / in->Ysize;

	if (p->mask)
		return dg_nearest_crop(ctx, in, p, err);
	if (in->BandFmt == VIPS_FORMAT_USHORT) {
		VipsImage **w = dg_slots(ctx, 3);

		/* libvips reduces 16-bit images in fixed point that loses a few levels: float, and
		 * rounded back. */
		if (vips_cast(in, &w[0], VIPS_FORMAT_FLOAT, NULL) ||
		    !(in = dg_resize_crop(ctx, w[0], p, err)) || vips_rint(in, &w[1], NULL) ||
		    vips_cast(w[1], &w[2], VIPS_FORMAT_USHORT, NULL))
			return NULL;
		return w[2];
	}
	if (in->BandFmt == VIPS_FORMAT_UCHAR &&
	    ((hscale >= 1.0 && vscale >= 1.0) ||
	     (long long) in->Xsize * in->Ysize <= DG_MAX_RESAMPLE_INPUT))
		return dg_resample_crop(ctx, in, p, err);
	/* Large images: reduce the axes that shrink (Lanczos), then enlarge the axes that grow:
	 * libvips only applies its kernels when reducing. */
	if (hscale < 1.0 || vscale < 1.0) {
		if (vips_resize(in, &t[0], MIN(hscale, 1.0), "vscale", MIN(vscale, 1.0), "kernel",
				VIPS_KERNEL_LANCZOS3, NULL))
			return NULL;
		in = t[0];
	}
	if (p->cover_width > in->Xsize || p->cover_height > in->Ysize) {
		if (!(in = dg_enlarge(ctx, in, MAX(p->cover_width, in->Xsize),
				      MAX(p->cover_height, in->Ysize))))
			return NULL;
	}
	/* vips_resize rounds each axis on its own and can land a pixel off the cover size; the
	 * crop geometry is defined on the exact cover size, so pad or trim to it. */
	if (in->Xsize != p->cover_width || in->Ysize != p->cover_height) {
		if (vips_embed(in, &t[1], 0, 0, p->cover_width, p->cover_height, "extend",
			       VIPS_EXTEND_COPY, NULL))
			return NULL;
		in = t[1];
	}
	if (in->Xsize != p->out_width || in->Ysize != p->out_height) {
		if (vips_extract_area(in, &t[2], p->crop_left, p->crop_top, p->out_width, p->out_height,
				      NULL))
			return NULL;
		in = t[2];
	}
	return in;
}

/* dg_resize_crop for images with alpha (RGBA, LA): colours are premultiplied by their alpha
 * while Lanczos mixes neighbours (else transparent pixels bleed their hidden colour into the
 * edges), in float, then back to the input's sample format. */
static VipsImage *
dg_resize_alpha(VipsObject *ctx, VipsImage *in, const dg_params *p, char *err)
{
	VipsImage **t = dg_slots(ctx, 4);
	VipsBandFormat fmt = in->BandFmt;
	double max_alpha = fmt == VIPS_FORMAT_USHORT ? 65535.0 : 255.0;

	if (vips_premultiply(in, &t[0], "max_alpha", max_alpha, NULL))
		return NULL;
	if (!(in = dg_resize_crop(ctx, t[0], p, err)))
		return NULL;
	if (vips_unpremultiply(in, &t[1], "max_alpha", max_alpha, NULL))
		return NULL;
	in = t[1];
	if (fmt == VIPS_FORMAT_USHORT) {
		/* Rounded: a truncation would lose a level of 16 bits on most samples. (8-bit output
		 * keeps the truncation it always had.) */
		if (vips_rint(in, &t[3], NULL))
			return NULL;
		in = t[3];
	}
	if (vips_cast(in, &t[2], fmt, NULL))
		return NULL;
	return t[2];
}

/* Computes every pixel of in into dst (VIPS_IMAGE_SIZEOF_IMAGE(in) bytes) on the calling thread.
 * vips_image_write() would run libvips' thread pool: a handoff per image that costs more than it
 * gives when goroutines already keep every core busy, and a pool whose threads are gone in a
 * forked child, where it would wait forever. */
static int
dg_compute(VipsImage *in, void *dst)
{
	VipsRect all = { 0, 0, in->Xsize, in->Ysize };
	VipsImage *wrap;
	VipsRegion *from = NULL;
	VipsRegion *to = NULL;
	int ret = -1;

	if (!(wrap = vips_image_new_from_memory(dst, VIPS_IMAGE_SIZEOF_IMAGE(in), in->Xsize,
						in->Ysize, in->Bands, in->BandFmt)))
		return -1;
	if (!(from = vips_region_new(in)) || !(to = vips_region_new(wrap)))
		goto done;
	if (vips_region_image(to, &all) || vips_region_prepare_to(from, to, &all, 0, 0))
		goto done;
	ret = 0;
done:
	VIPS_UNREF(from);
	VIPS_UNREF(to);
	g_object_unref(wrap);
	return ret;
}

/* An in-memory copy of in, computed on the calling thread (see dg_compute). */
static VipsImage *
dg_copy_memory(VipsObject *ctx, VipsImage *in)
{
	VipsImage **t = dg_slots(ctx, 1);

	t[0] = vips_image_new_memory();
	if (vips_image_pipelinev(t[0], VIPS_DEMAND_STYLE_ANY, in, NULL) ||
	    vips_image_write_prepare(t[0]) || dg_compute(in, VIPS_IMAGE_ADDR(t[0], 0, 0)))
		return NULL;
	return t[0];
}

static int
dg_write(VipsObject *ctx, VipsImage *in, const dg_params *p, dg_output *out)
{
	int depth = in->BandFmt == VIPS_FORMAT_USHORT ? 16 : 8;

	if (p->pre_encode) {
		char err[DG_ENCODE_ERR_LEN] = "";
		void *buf = NULL;
		size_t len = 0;
		int r;
		/* A mask's levels are labels: never JPEG's approximations of them. */
		int format = p->mask && p->encode_format == DG_ENC_JPEG ? DG_ENC_PNG : p->encode_format;

		if (!(in = dg_copy_memory(ctx, in)))
			return -1;
		r = dg_encode(VIPS_IMAGE_ADDR(in, 0, 0), in->Xsize, in->Ysize, in->Bands, depth,
			      format, p->quality, &buf, &len, &out->bit_depth, err, sizeof(err));
		if (r) {
			snprintf(out->err, sizeof(out->err), "cannot encode: %s", err);
			return -1;
		}
		out->data = buf;
		out->len = len;
		out->encoded = 1;
	} else {
		size_t len = VIPS_IMAGE_SIZEOF_IMAGE(in);
		void *data;

		/* Written straight into malloc memory so the caller can free() it. */
		if (!(data = malloc(len ? len : 1))) {
			snprintf(out->err, sizeof(out->err), "out of memory for %zu bytes", len);
			return -1;
		}
		if (dg_compute(in, data)) {
			free(data);
			return -1;
		}
		out->data = data;
		out->len = len;
		out->bands = in->Bands;
		out->bit_depth = depth;
	}
	out->width = in->Xsize;
	out->height = in->Ysize;
	return 0;
}

/* The alpha mask of an image without alpha: opaque, w x h 255s (PNG with pre_encode). */
static int
dg_opaque_mask(int width, int height, const dg_params *p, dg_output *out)
{
	size_t n = (size_t) width * height;

	if (!(out->mask_data = malloc(n ? n : 1))) {
		snprintf(out->err, sizeof(out->err), "out of memory for %zu bytes", n);
		return -1;
	}
	memset(out->mask_data, 255, n);
	out->mask_len = n;
	if (p->pre_encode) {
		char err[DG_ENCODE_ERR_LEN] = "";
		void *buf = NULL;
		size_t len = 0;
		int depth;

		if (dg_encode(out->mask_data, width, height, 1, 8, DG_ENC_PNG, 0, &buf, &len, &depth,
			      err, sizeof(err))) {
			snprintf(out->err, sizeof(out->err), "cannot encode the alpha mask: %s", err);
			return -1;
		}
		free(out->mask_data);
		out->mask_data = buf;
		out->mask_len = len;
	}
	return 0;
}

/* alpha_mask: in (colour + alpha, resized) is decoded once into memory; its alpha, as 8-bit
 * grey (PNG with pre_encode, as masks are), goes to out->mask_data, and the colour flattened
 * onto the background is returned. Premultiplied resizing then flattening equals flattening then
 * resizing (both are linear in the premultiplied colour), so the image is what it would be
 * without the mask. An image without alpha (1 or 3 bands) is returned as it is, with an opaque
 * mask. */
static VipsImage *
dg_split_alpha(VipsObject *ctx, VipsImage *in, const dg_params *p, dg_output *out)
{
	VipsImage **t = dg_slots(ctx, 4);
	int wide = in->BandFmt == VIPS_FORMAT_USHORT;
	VipsArrayDouble *background;
	VipsImage *alpha;
	size_t n;
	int r;

	if (in->Bands == 1 || in->Bands == 3)
		return dg_opaque_mask(in->Xsize, in->Ysize, p, out) ? NULL : in;
	if (!(in = dg_copy_memory(ctx, in)))
		return NULL;
	if (vips_extract_band(in, &t[0], in->Bands - 1, NULL))
		return NULL;
	alpha = t[0];
	if (wide) {
		if (vips_cast(alpha, &t[1], VIPS_FORMAT_UCHAR, "shift", TRUE, NULL))
			return NULL;
		alpha = t[1];
	}
	n = (size_t) alpha->Xsize * alpha->Ysize;
	if (!(out->mask_data = malloc(n ? n : 1))) {
		snprintf(out->err, sizeof(out->err), "out of memory for %zu bytes", n);
		return NULL;
	}
	out->mask_len = n;
	if (dg_compute(alpha, out->mask_data))
		return NULL;
	if (p->pre_encode) {
		char err[DG_ENCODE_ERR_LEN] = "";
		void *buf = NULL;
		size_t len = 0;
		int depth;

		if (dg_encode(out->mask_data, alpha->Xsize, alpha->Ysize, 1, 8, DG_ENC_PNG, 0, &buf,
			      &len, &depth, err, sizeof(err))) {
			snprintf(out->err, sizeof(out->err), "cannot encode the alpha mask: %s", err);
			return NULL;
		}
		free(out->mask_data);
		out->mask_data = buf;
		out->mask_len = len;
	}
	background = dg_background(in->Bands - 1, p->background, wide ? 257.0 : 1.0);
	r = vips_flatten(in, &t[2], "background", background, "max_alpha", wide ? 65535.0 : 255.0,
			 NULL);
	vips_area_unref(VIPS_AREA(background));
	if (r || vips_cast(t[2], &t[3], in->BandFmt, NULL))
		return NULL;
	return t[3];
}

/* Everything after the load, for dg_process. */
static int
dg_decode(VipsObject *ctx, VipsImage *im, const dg_params *p, dg_output *out)
{
	VipsImage **t = dg_slots(ctx, 1);

	if (p->orientation > 2) {
		/* Rotations (anything but a left-right mirror) read rows out of order, which a
		 * sequential load cannot serve and a random-access JPEG load serves by decoding
		 * again and again. Decode once, top to bottom, into memory instead. */
		if (!(im = dg_copy_memory(ctx, im)))
			return -1;
	}
	if (p->orientation > 1) {
		if (vips_autorot(im, &t[0], NULL))
			return -1;
		im = t[0];
	}
	if (p->mask) {
		/* Nearest-neighbour picks pixels and the conversion is per pixel, so they commute:
		 * converting after the resize gives the same result on far fewer pixels. */
		if (p->resize && !(im = dg_resize_crop(ctx, im, p, out->err)))
			return -1;
		if (!(im = dg_colour(ctx, im, 1, p)))
			return -1;
	} else {
		/* Colour first: alpha must be flattened and colours converted before Lanczos mixes
		 * neighbouring pixels. dg_colour leaves an alpha band (2 or 4 bands) only when it is
		 * kept. */
		if (!(im = dg_colour(ctx, im, 0, p)))
			return -1;
		if (p->resize && (im->Bands == 2 || im->Bands == 4)) {
			if (!(im = dg_resize_alpha(ctx, im, p, out->err)))
				return -1;
		} else if (p->resize && !(im = dg_resize_crop(ctx, im, p, out->err)))
			return -1;
		if (p->alpha_mask && !(im = dg_split_alpha(ctx, im, p, out)))
			return -1;
	}
	return dg_write(ctx, im, p, out);
}

/* dg_process through codec.c's direct decoder: DG_DIRECT_OK with out filled (or too_large set),
 * or DG_DIRECT_NO when libvips has to do it. */
static int
dg_process_direct(const void *buf, size_t len, const dg_params *p, dg_output *out)
{
	int loader = p->probe ? dg_sniff(buf, len) : p->loader;
	dg_raw raw;
	uint8_t *pixels;
	int width, height;

	switch (dg_direct_decode(buf, len, loader, p->probe ? 1 : p->shrink, p->max_pixels,
				 p->resize ? DG_MAX_RESAMPLE_INPUT : 0, &raw, out->codec_err,
				 sizeof(out->codec_err))) {
	case DG_DIRECT_TOO_LARGE:
		out->orig_width = raw.full_width;
		out->orig_height = raw.full_height;
		out->too_large = 1;
		return DG_DIRECT_OK;
	case DG_DIRECT_OK:
		if (p->native && raw.grey) { /* native grey stays one band: libvips */
			free(raw.pixels);
			return DG_DIRECT_NO;
		}
		break;
	default:
		return DG_DIRECT_NO;
	}
	pixels = raw.pixels;
	width = raw.width;
	height = raw.height;
	if (p->resize) {
		uint8_t *dst = malloc((size_t) p->out_width * p->out_height * 3);

		if (!dst || dg_resample_lanczos_extent(raw.pixels, raw.width, raw.height,
						       dg_extent(p, raw.width, raw.full_width),
						       dg_extent(p, raw.height, raw.full_height), 3,
						       p->cover_width, p->cover_height, p->crop_left,
						       p->crop_top, p->out_width, p->out_height, dst)) {
			free(dst);
			free(raw.pixels);
			return DG_DIRECT_NO;
		}
		free(raw.pixels);
		pixels = dst;
		width = p->out_width;
		height = p->out_height;
	}
	if (p->pre_encode) {
		char err[DG_ENCODE_ERR_LEN] = "";
		int r = dg_encode(pixels, width, height, 3, 8, p->encode_format, p->quality,
				  &out->data, &out->len, &out->bit_depth, err, sizeof(err));

		free(pixels);
		if (r)
			return DG_DIRECT_NO;
		out->encoded = 1;
	} else {
		out->data = pixels;
		out->len = (size_t) width * height * 3;
		out->bands = 3;
		out->bit_depth = 8;
	}
	out->width = width;
	out->height = height;
	out->orig_width = raw.full_width;
	out->orig_height = raw.full_height;
	out->direct = 1;
	/* The direct decoders take no image with alpha. */
	if (p->alpha_mask && dg_opaque_mask(width, height, p, out)) {
		free(out->data);
		free(out->mask_data);
		return DG_DIRECT_NO;
	}
	return DG_DIRECT_OK;
}

int
dg_process(const void *buf, size_t len, const dg_params *p, dg_output *out)
{
	VipsObject *ctx;
	dg_params probed;
	VipsImage *im;
	int ret = -1;

	memset(out, 0, sizeof(*out));
	if (p->direct && !p->mask) {
		char codec_err[DG_ERR_LEN];

		if (dg_process_direct(buf, len, p, out) == DG_DIRECT_OK)
			return out->too_large ? -1 : 0;
		memcpy(codec_err, out->codec_err, sizeof(codec_err));
		memset(out, 0, sizeof(*out));
		memcpy(out->codec_err, codec_err, sizeof(codec_err));
	}
	ctx = dg_context();
	if (p->probe) {
		/* No separate header call: the load that decodes reads the header too. */
		probed = *p;
		probed.loader = dg_sniff(buf, len);
		probed.shrink = 1;
		if (!(im = dg_open(ctx, buf, len, probed.loader, 1, out->err)))
			goto done;
		probed.orientation = vips_image_get_orientation(im);
		dg_oriented_size(im, &out->orig_width, &out->orig_height);
		if (p->max_pixels > 0 && (long long) im->Xsize * im->Ysize > p->max_pixels) {
			out->too_large = 1;
			goto done;
		}
		p = &probed;
	} else if (!(im = dg_open(ctx, buf, len, p->loader, p->shrink, out->err)))
		goto done;
	/* Only now, past the pixel limit: the header alone was read so far. An animation stays
	 * with libvips, which composes its frames. */
	if (p->loader == DG_LOADER_WEBP && !p->webp_libvips &&
	    !vips_image_get_typeof(im, VIPS_META_N_PAGES) &&
	    !(im = dg_webp_pixels(ctx, im, buf, len, p->shrink)))
		goto done;
	ret = dg_decode(ctx, im, p, out);

done:
	/* Drops the whole pipeline, and with it every reference to buf. */
	g_object_unref(ctx);
	if (ret) {
		free(out->mask_data);
		out->mask_data = NULL;
		out->mask_len = 0;
	}
	return ret;
}

size_t
dg_tracked_mem(void)
{
	return vips_tracked_get_mem();
}

int
dg_tracked_allocs(void)
{
	return vips_tracked_get_allocs();
}

static void *
dg_count_object(void *object, void *a, void *b)
{
	(void) object;
	(void) b;
	(*(int *) a)++;
	return NULL;
}

int
dg_object_count(void)
{
	int n = 0;

	vips_object_map(dg_count_object, &n, NULL);
	return n;
}

int
dg_test_encode(const void *pixels, int width, int height, int bands, const char *suffix,
	       const char *profile, int keep_profile, void **out, size_t *out_len)
{
	VipsObject *ctx = dg_context();
	VipsImage **t = dg_slots(ctx, 3);
	VipsImage *im;
	void *buf = NULL;
	size_t len = 0;
	int ret = -1;

	*out = NULL;
	*out_len = 0;
	if (!(t[0] = vips_image_new_from_memory(pixels, (size_t) width * height * bands, width,
						height, bands, VIPS_FORMAT_UCHAR)))
		goto done;
	im = t[0];
	if (profile) {
		/* Attaches the profile too. */
		if (vips_icc_transform(im, &t[1], profile, "input_profile", "srgb", NULL))
			goto done;
		im = t[1];
		if (!keep_profile) {
			if (vips_copy(im, &t[2], NULL))
				goto done;
			vips_image_remove(t[2], VIPS_META_ICC_NAME);
			im = t[2];
		}
	}
	if (vips_image_write_to_buffer(im, suffix, &buf, &len, NULL))
		goto done;
	if (!(*out = malloc(len))) {
		g_free(buf);
		goto done;
	}
	memcpy(*out, buf, len);
	*out_len = len;
	g_free(buf);
	ret = 0;

done:
	g_object_unref(ctx);
	return ret;
}
