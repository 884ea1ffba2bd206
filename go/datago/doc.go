// Package datago is the loader: it validates a configuration, wires a source to pools of workers
// that fetch and process images, and serves the processed samples from a bounded ready queue.
//
//	list (1 goroutine, once per epoch) -> items (prefetch_buffer_size) -> fetch pool (IO)
//	  -> fetched (concurrency) -> decode pool (concurrency)
//	  [-> collect: listing order, bucketed batches] -> ready queue (samples_buffer_size) -> Next
//
// One file per stage: list.go, fetch.go, decode.go, collect.go, queue.go; pipeline.go wires them,
// client.go holds the lifecycle. Every stage stops when the run's context is cancelled.
//
// Glossary (one name per concept, here, in the C ABI, in Python and in README):
//   - source: where samples come from (internal/source/...): it lists items and fetches their bytes.
//   - item: the description of one sample before its bytes are read (source.Item).
//   - sample: one delivered image with its id, metadata and extras (Sample).
//   - extra: a named member of a sample besides its image: a mask, an additional image, or bytes;
//     masks and additional images share the image's crop. SampleItem here, datago_item in the C ABI
//     (a name older than this glossary, kept for the ABI), masks / additional_images / latents in Python.
//   - bucket: one of the aspect-ratio sizes images are cropped and resized to (internal/bucket).
//   - batch: batch_size samples of one bucket stacked in one buffer (Batch).
//   - ready queue: the processed samples (or batches) waiting for the consumer.
//   - skip: a sample that is not delivered, counted under a reason (internal/source/reasons.go);
//     a skip report carries its id, reason and message (SkipReport; Python's client.skipped()).
//   - resume state: what a client has delivered, enough to continue exactly (State, internal/resume).
//   - catalog: map-style access to a filesystem source (Catalog; Python's MapDataset).
//   - run: one Start-to-Stop life of the pipeline (pipeline.go).
package datago
