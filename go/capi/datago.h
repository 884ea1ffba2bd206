/*
 * datago C ABI: the contract between libdatago.so (Go) and its callers (Python, through cffi).
 *
 * Ownership rules:
 * - Inputs (config JSON, ...) are borrowed for the duration of the call.
 * - Everything the library returns is allocated by the library with C malloc and is released only
 *   through the library: strings with datago_free, samples with datago_sample_free (which releases
 *   the sample, its id, its buffers and its items). Pixel and byte buffers are never Go memory.
 * - A client is an opaque non-zero handle. Every function is safe to call from any thread.
 * - This header is included by the Go exports themselves (go/capi), so the build fails if a Go
 *   signature drifts from it; that is also why pointer parameters are not const (cgo cannot say const).
 * - Every function that can fail returns a status code; on an error status, *err (when err is not
 *   NULL) receives a message that the caller frees with datago_free. No Go panic crosses the ABI:
 *   it is reported as DATAGO_ERR_INTERNAL.
 * - The first such panic poisons the library: its stack is printed to stderr once, and from then on
 *   every call that returns a status fails at once with DATAGO_ERR_INTERNAL and a message naming
 *   that first panic. Functions without a status then do nothing (datago_client_free,
 *   datago_catalog_free; datago_catalog_len returns -1), except those that only release C memory
 *   (datago_free, datago_sample_free, datago_batch_free) and the fork hooks, which still run.
 */
#ifndef DATAGO_H
#define DATAGO_H

#include <stddef.h>
#include <stdint.h>

#define DATAGO_ABI_VERSION 5

/* Status codes. */
#define DATAGO_OK 0
#define DATAGO_END 1           /* datago_client_next: the source is exhausted or the limit reached */
#define DATAGO_TIMEOUT 2       /* datago_client_next: nothing ready within timeout_ms; call again */
#define DATAGO_ERR_CONFIG 3    /* bad configuration; the message starts with the key path, e.g. "source_config.rank: ..." */
#define DATAGO_ERR_RUNTIME 4   /* the client failed while running (for example its source broke) */
#define DATAGO_ERR_STATE 5     /* misuse: unknown or freed handle, next before start, ... */
#define DATAGO_ERR_INTERNAL 6  /* a bug in datago (a recovered Go panic): the library is poisoned */

/* Kinds of the named items a sample may carry besides its main image. */
#define DATAGO_ITEM_MASK 1             /* single-channel 8-bit image aligned with the main image (also
                                        * the main image's alpha, with image_config.alpha_mask) */
#define DATAGO_ITEM_ADDITIONAL_IMAGE 2 /* image aligned with the main image, in the main image's modes */
#define DATAGO_ITEM_BYTES 3            /* raw bytes (latents, extra archive members, ...) */

typedef uint64_t datago_client;

/* Pixels (row-major height x width x channels samples of bit_depth bits) when channels > 0;
 * encoded or raw bytes when channels == 0.
 * channels: 3 (RGB) with image_to_rgb8 true, 4 (RGBA) with alpha_background "keep", 1 for masks;
 * with image_to_rgb8 false, the decoded mode: 1 (L), 2 (LA), 3 (RGB) or 4 (RGBA).
 * bit_depth (since ABI 5): 8 (uint8 samples) or 16 (uint16 samples in the host's byte order, so
 * len is 2 x height x width x channels): 16 only for 16-bit images with image_to_rgb8 false. For
 * an encoded image, the depth of the pixels it encodes (a 16-bit PNG: 16); 0 for raw bytes. */
typedef struct datago_buffer {
    uint8_t *data;
    size_t len;
    int32_t width;
    int32_t height;
    int32_t channels;
    int32_t bit_depth;
} datago_buffer;

typedef struct datago_item {
    char *name;
    int32_t kind;
    datago_buffer buf;
} datago_item;

typedef struct datago_sample {
    char *id;
    datago_buffer image;      /* all zero when the sample has no main image (dataroom, require_images false) */
    int32_t original_width;   /* size before processing, after EXIF orientation */
    int32_t original_height;
    int32_t n_items;
    datago_item *items;       /* n_items entries, NULL when n_items == 0 */
    char *meta_json;          /* NULL, or a JSON object with source-specific metadata */
} datago_sample;

/* batch_size samples of one bucket (fewer at the end of an epoch), their images in one buffer. */
typedef struct datago_batch {
    int32_t size;
    datago_buffer images;     /* width, height, channels of one image; len covers all: size x height x width x channels
                               * (batches are 8-bit: batch_size refuses image_to_rgb8 false) */
    char **ids;               /* size entries */
    int32_t *original_sizes;  /* 2 x size entries: width, height of each sample before processing */
    char **meta_json;         /* size entries, each NULL or a JSON object */
} datago_batch;

typedef uint64_t datago_catalog;

int32_t datago_abi_version(void);
/* A static string: never free it. */
char *datago_version(void);

int32_t datago_client_new(char *config_json, datago_client *out, char **err);
int32_t datago_client_start(datago_client client, char **err);
/* Blocks up to timeout_ms (negative: forever). On DATAGO_OK, *out is a sample to free with datago_sample_free. */
int32_t datago_client_next(datago_client client, int32_t timeout_ms, datago_sample **out, char **err);
void datago_sample_free(datago_sample *sample);
/* As datago_client_next, for up to max samples in one call: waits up to timeout_ms for the first,
 * then takes those already ready without waiting. On DATAGO_OK, *n (1..max) samples are in
 * out[0..*n-1], each to free with datago_sample_free; on another status *n is 0. An end or an
 * error met after the first sample is reported by the next call. The resume state
 * (datago_client_state) counts these samples as still queued until they are marked delivered:
 * all of them by the next datago_client_next_many call, the first n by datago_client_delivered.
 * Since ABI 4. */
int32_t datago_client_next_many(datago_client client, int32_t timeout_ms, int32_t max, datago_sample **out,
                                int32_t *n, char **err);
/* Marks the first n samples (all of them when n < 0) of the last datago_client_next_many calls
 * as delivered to the user, for the resume state. Since ABI 4. */
int32_t datago_client_delivered(datago_client client, int32_t n, char **err);
/* With batch_size in the config: as datago_client_next, for batches (free with datago_batch_free). */
int32_t datago_client_next_batch(datago_client client, int32_t timeout_ms, datago_batch **out, char **err);
void datago_batch_free(datago_batch *batch);
/* *out: the configuration's batch_size, 0 when the client delivers samples (datago_client_next)
 * rather than batches (datago_client_next_batch). Since ABI 3. */
int32_t datago_client_batch_size(datago_client client, int32_t *out, char **err);
/* The resume state: a JSON object to pass back as the config's "resume_state"; freed with datago_free. */
int32_t datago_client_state(datago_client client, char **out_json, char **err);
/* *out_json: a JSON object of counters, freed with datago_free. */
int32_t datago_client_stats(datago_client client, char **out_json, char **err);
/* Stops the pipeline and waits for its goroutines. Idempotent. */
int32_t datago_client_stop(datago_client client, char **err);
/* Stops if needed and releases the handle. Unknown handles are ignored. */
void datago_client_free(datago_client client);

/* Drains the reports of samples skipped since the last call: *out_json is a JSON array of
 * {"id": ..., "reason": ..., "message": ...} objects (the most recent 1024 are kept between calls),
 * freed with datago_free. Skips are also counted in the stats. Since ABI 3. */
int32_t datago_client_skips(datago_client client, char **out_json, char **err);
/* The name of datago_client_skips before ABI 3, kept as an alias. */
int32_t datago_client_errors(datago_client client, char **out_json, char **err);

/* Aspect-ratio buckets as a JSON array of [width, height] pairs, freed with datago_free. */
int32_t datago_buckets(int32_t default_image_size, int32_t downsampling_ratio, double min_aspect_ratio,
                       double max_aspect_ratio, char **out_json, char **err);

/* Map-style access to a filesystem source: the files sorted by path, any of them on demand. */
int32_t datago_catalog_new(char *config_json, datago_catalog *out, char **err);
/* The number of files; -1 for an unknown handle or a poisoned library. */
int64_t datago_catalog_len(datago_catalog catalog);
/* *out_json: the JSON array of the files' ids in index order, freed with datago_free. */
int32_t datago_catalog_ids(datago_catalog catalog, char **out_json, char **err);
/* Processes the n files at indices in parallel: out[i] is a sample to free with datago_sample_free,
 * or NULL when that file could not be read or decoded (counted in the stats, reported in skips). */
int32_t datago_catalog_get(datago_catalog catalog, int64_t *indices, int32_t n, datago_sample **out,
                           char **err);
int32_t datago_catalog_stats(datago_catalog catalog, char **out_json, char **err);
/* As datago_client_skips, for the files of datago_catalog_get calls. Since ABI 3. */
int32_t datago_catalog_skips(datago_catalog catalog, char **out_json, char **err);
/* The name of datago_catalog_skips before ABI 3, kept as an alias. */
int32_t datago_catalog_errors(datago_catalog catalog, char **out_json, char **err);
void datago_catalog_free(datago_catalog catalog);

void datago_free(void *p);

/* Around fork(): prepare waits until no thread is inside libvips and keeps them out, so that a
 * child does not inherit a lock held by a thread it does not have; parent (in the parent, after
 * fork) lets them resume. The child must not call into this copy of the library again. */
void datago_fork_prepare(void);
void datago_fork_parent(void);
/* In a forked child, a fresh copy of the library (the parent's Go runtime does not survive fork)
 * is loaded and this is called before anything else: it keeps the child from writing into
 * memory it still shares with the parent (libvips' generated SIMD code). */
void datago_fork_child_init(void);

#endif
