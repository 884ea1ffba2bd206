#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "prescan.h"

static uint32_t
dg_be32(const uint8_t *p)
{
	return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static uint32_t
dg_le32(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

/* A chunk type for a message: four printable characters, whatever the bytes are. */
static const char *
dg_fourcc(const uint8_t *p, char out[5])
{
	int i;

	for (i = 0; i < 4; i++)
		out[i] = p[i] >= 0x20 && p[i] < 0x7F ? (char) p[i] : '?';
	out[4] = 0;
	return out;
}

/* ---- PNG ---- */

static int
dg_png_type(const uint8_t *type, const char *name)
{
	return !memcmp(type, name, 4);
}

/* The profile size an iCCP chunk declares (the first four bytes of the ICC header, inside the
 * deflate stream), or 0 when it cannot be read: libpng then refuses the chunk before allocating. */
static uint32_t
dg_icc_declared(const uint8_t *data, uint32_t n)
{
	const uint8_t *nul = memchr(data, 0, n < 81 ? n : 81);
	uint8_t head[4];
	z_stream z;
	size_t skip;
	int r;

	if (!nul)
		return 0;
	skip = (size_t) (nul - data) + 2; /* name, NUL, compression method */
	if (skip >= n)
		return 0;
	memset(&z, 0, sizeof(z));
	if (inflateInit(&z) != Z_OK)
		return 0;
	z.next_in = (Bytef *) data + skip;
	z.avail_in = n - skip;
	z.next_out = head;
	z.avail_out = sizeof(head);
	r = inflate(&z, Z_SYNC_FLUSH);
	inflateEnd(&z);
	if ((r != Z_OK && r != Z_STREAM_END) || z.avail_out)
		return 0;
	return dg_be32(head);
}

/* Whether the copy handed to the decoders keeps this chunk. Critical chunks (upper-case first
 * letter) always stay: the decoders must see what they cannot skip. Of the ancillary ones only
 * those that change pixels, colours or orientation stay. Every dropped one is metadata datago
 * never delivers, and the text chunks among them are compressed, unbounded after inflating. */
static int
dg_png_keep(const uint8_t *type, const uint8_t *data, uint32_t n)
{
	static const char *kept[] = { "tRNS", "gAMA", "cHRM", "sRGB", "sBIT", "bKGD", "pHYs",
				      "eXIf", "acTL", "fcTL", "fdAT", "iCCP" };
	size_t i;

	if (!(type[0] & 0x20))
		return 1;
	for (i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
		if (dg_png_type(type, kept[i]))
			break;
	if (i == sizeof(kept) / sizeof(kept[0]))
		return 0;
	if (dg_png_type(type, "iCCP")) {
		/* libpng allocates the declared profile size before inflating. Deflate cannot expand
		 * more than 1032:1, so a larger declaration cannot be honest. libpng itself drops a
		 * profile it cannot read and decodes the pixels as sRGB; so does this. */
		uint64_t declared = dg_icc_declared(data, n);

		return declared <= DG_MAX_ICC_PROFILE && declared <= (uint64_t) n * 1032 + 1024;
	}
	return 1;
}

/* One walk over the chunks. Without out it checks and tells whether a copy is needed; with out
 * it writes the copy (never longer than the input). */
static int
dg_png_walk(const uint8_t *b, size_t len, uint8_t *out, size_t *out_len, char *err, size_t errlen)
{
	size_t pos = 8, w = 8;
	int pixels = 0, copy = 0, tail = 1;

	if (out)
		memcpy(out, b, 8);
	while (len - pos >= 8) {
		uint32_t n = dg_be32(b + pos);
		const uint8_t *type = b + pos + 4;
		size_t left = len - pos - 8;
		char name[5];
		int keep;

		if ((size_t) n > left || left - n < 4) {
			/* A chunk cut short. After the pixels an ancillary chunk can go, with the rest of
			 * the file: what is left decodes as a PNG without IEND does, as it did before this
			 * pass (libpng warns and goes on). Anywhere else the pixels, or what they depend
			 * on, are not all there. */
			if (pixels && (type[0] & 0x20)) {
				copy = 1;
				tail = 0;
				break;
			}
			snprintf(err, errlen,
				 "png: %.4s chunk at byte %zu declares %u bytes but only %zu follow "
				 "(truncated or corrupt)",
				 dg_fourcc(type, name), pos, n, left);
			return -1;
		}
		if (n > 0x7FFFFFFFu) {
			snprintf(err, errlen, "png: %.4s chunk at byte %zu declares %u bytes, more than "
				 "PNG allows", dg_fourcc(type, name), pos, n);
			return -1;
		}
		keep = dg_png_keep(type, b + pos + 8, n);
		copy |= !keep;
		if (dg_png_type(type, "IDAT"))
			pixels = 1;
		if (out && keep) {
			memcpy(out + w, b + pos, (size_t) n + 12);
			w += (size_t) n + 12;
		}
		pos += (size_t) n + 12;
		if (dg_png_type(type, "IEND")) {
			tail = 0;
			break;
		}
	}
	/* Fewer than 8 bytes after the last whole chunk: a partial chunk header, left to the
	 * decoders (it allocates nothing). After IEND or a dropped tail nothing more is copied. */
	if (out && tail) {
		memcpy(out + w, b + pos, len - pos);
		w += len - pos;
	}
	if (out_len)
		*out_len = w;
	return copy;
}

/* ---- JPEG ---- */

static int
dg_jpeg_walk(const uint8_t *b, size_t len, char *err, size_t errlen)
{
	size_t pos = 2;

	/* Up to the first scan: what follows is entropy-coded data, which libjpeg reads as it
	 * comes. A segment length is 16 bits, so libjpeg never allocates more than 64 KiB for one
	 * marker; this pass only refuses lengths the file cannot hold before a decoder reads them. */
	while (len - pos >= 4) {
		unsigned m = b[pos + 1], n;

		if (b[pos] != 0xFF)
			break; /* garbage between segments: libjpeg warns, libvips decides */
		if (m == 0xFF) {
			pos++;
			continue;
		}
		if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {
			pos += 2;
			continue;
		}
		if (m == 0xD9)
			break;
		n = (unsigned) b[pos + 2] << 8 | b[pos + 3];
		if (n < 2) {
			snprintf(err, errlen, "jpeg: marker 0xFF%02X at byte %zu has length %u", m, pos, n);
			return -1;
		}
		if (n > len - pos - 2) {
			snprintf(err, errlen,
				 "jpeg: marker 0xFF%02X segment at byte %zu declares %u bytes but only "
				 "%zu follow (truncated)", m, pos, n, len - pos - 2);
			return -1;
		}
		if (m == 0xDA)
			break;
		pos += 2 + n;
	}
	return 0;
}

/* ---- WebP ---- */

static int
dg_webp_walk(const uint8_t *b, size_t len, char *err, size_t errlen)
{
	uint32_t riff = dg_le32(b + 4);
	size_t end, pos = 12;

	if ((size_t) riff > len - 8) {
		snprintf(err, errlen,
			 "webp: RIFF header declares %u bytes but the file has %zu (truncated)", riff,
			 len - 8);
		return -1;
	}
	end = (size_t) riff + 8;
	while (end >= pos + 8) {
		uint32_t n = dg_le32(b + pos + 4);
		char name[5];

		if ((size_t) n > end - pos - 8) {
			snprintf(err, errlen,
				 "webp: %.4s chunk at byte %zu declares %u bytes but only %zu follow "
				 "(truncated or corrupt)",
				 dg_fourcc(b + pos, name), pos, n, end - pos - 8);
			return -1;
		}
		pos += 8 + (size_t) n + (n & 1);
	}
	return 0;
}

int
dg_prescan(const void *buf, size_t len, void **clean, size_t *clean_len, char *err, size_t errlen)
{
	const uint8_t *b = buf;
	uint8_t *out;
	int r;

	*clean = NULL;
	*clean_len = 0;
	if (len >= 8 && !memcmp(b, "\x89PNG\r\n\x1a\n", 8)) {
		if ((r = dg_png_walk(b, len, NULL, NULL, err, errlen)) <= 0)
			return r;
		if (!(out = malloc(len))) {
			snprintf(err, errlen, "png: out of memory for a %zu-byte copy", len);
			return -1;
		}
		dg_png_walk(b, len, out, clean_len, err, errlen);
		*clean = out;
		return 1;
	}
	if (len >= 4 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
		return dg_jpeg_walk(b, len, err, errlen);
	if (len >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WEBP", 4))
		return dg_webp_walk(b, len, err, errlen);
	return 0;
}
