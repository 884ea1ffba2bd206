// Package datago is the loader: it validates a configuration, wires a source to a pool of workers
// that fetch and process images, and serves the processed samples from a bounded ready queue.
//
//	source.List (1 goroutine, once per epoch) -> items (prefetch_buffer_size) -> fetchers (IO)
//	  -> decoders (concurrency) [-> collector: listing order, batches] -> ready (samples_buffer_size) -> Next
//
// One file per stage: list.go, fetch.go, decode.go, collect.go, queue.go; pipeline.go wires them.
// Every stage stops when the run's context is cancelled; Stop waits for all of them.
package datago
