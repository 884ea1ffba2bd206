// The two free functions of the ABI that only release C memory, in C: a caller (Python, for
// every sample) then frees without entering the Go runtime, which needs a P for every call.
// They are part of the exported ABI (datago.h) beside exports.go's, and like them run whether
// or not the library is poisoned: no Go state is involved.
#include <stdlib.h>
#include "datago.h"

void
datago_sample_free(datago_sample *s)
{
	if (!s)
		return;
	free(s->id);
	free(s->image.data);
	for (int32_t i = 0; i < s->n_items; i++) {
		free(s->items[i].name);
		free(s->items[i].buf.data);
	}
	free(s->items);
	free(s->meta_json);
	free(s);
}

void
datago_batch_free(datago_batch *b)
{
	if (!b)
		return;
	for (int32_t i = 0; b->ids && i < b->size; i++)
		free(b->ids[i]);
	for (int32_t i = 0; b->meta_json && i < b->size; i++)
		free(b->meta_json[i]);
	free(b->ids);
	free(b->meta_json);
	free(b->original_sizes);
	free(b->images.data);
	free(b);
}
