/*
 * A pass over the container structure of an encoded image (PNG chunks, JPEG marker segments,
 * RIFF chunks of WebP) before any decoder sees the bytes. libpng 1.6 reads a chunk whose declared
 * length exceeds what the file holds by allocating (and zeroing) the declared size: a 57-byte PNG
 * declaring a 1 GiB tEXt costs a gigabyte and seconds in both libpng and libvips' pngload, which
 * datago cannot configure. Checking every declared length against the bytes present, and
 * handing the decoders a copy without the metadata chunks datago never reads, bounds what any
 * decoder allocates by the input (see dg_prescan).
 */
#ifndef DATAGO_IMAGING_PRESCAN_H
#define DATAGO_IMAGING_PRESCAN_H

#include <stddef.h>

#define DG_ERR_LEN 256 /* per-call message buffers (>= codec.h's DG_ENCODE_ERR_LEN) */

/* Largest ICC profile accepted in a PNG's iCCP chunk: its decompressed size is declared inside
 * the compressed stream, and libpng allocates it before inflating. Real profiles are a few KiB,
 * large LUT profiles a few MiB. */
#define DG_MAX_ICC_PROFILE (16 << 20)

/*
 * Returns 0 when buf can be decoded as it is; 1 when the decoders must be given *clean instead
 * (malloc'd, *clean_len <= len bytes: the same PNG without the chunks no datago output depends on:
 * text (tEXt, zTXt, iTXt), sPLT, pCAL, sCAL, tIME, hIST and any unknown ancillary chunk, an
 * iCCP whose declared profile cannot be real, and a truncated ancillary chunk after the pixels);
 * -1 with a message naming the format and the cause in err (errlen bytes) when a declared length
 * runs past the end of the file where the pixels need it.
 */
int dg_prescan(const void *buf, size_t len, void **clean, size_t *clean_len, char *err,
	       size_t errlen);

#endif
