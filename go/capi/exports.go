package main

/*
#include <stdlib.h>
#include "datago.h"
*/
import "C"

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/datago-dev/datago/datago"
)

// The exports, in the order of datago.h. Each body runs inside one guard wrapper (convert.go).

//export datago_abi_version
func datago_abi_version() C.int32_t { return C.DATAGO_ABI_VERSION } // a constant: nothing to guard

//export datago_version
func datago_version() (v *C.char) {
	callFree(func() { v = version() }) // static, so it stays available when poisoned
	return v
}

//export datago_client_new
func datago_client_new(config *C.char, out *C.datago_client, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		if config == nil || out == nil {
			return misuse("config and out must not be NULL")
		}
		syncEnviron()
		c, err := datago.NewFromJSON([]byte(C.GoString(config)))
		if err != nil {
			return err
		}
		*out = C.datago_client(clients.add(c))
		return nil
	})
}

//export datago_client_start
func datago_client_start(h C.datago_client, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		c, err := clients.get(uint64(h))
		if err != nil {
			return err
		}
		return c.Start()
	})
}

//export datago_client_next
func datago_client_next(h C.datago_client, timeoutMs C.int32_t, out **C.datago_sample, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		if out == nil {
			return misuse("out must not be NULL")
		}
		*out = nil
		faultPoints.Hit("abi")
		c, err := clients.get(uint64(h))
		if err != nil {
			return err
		}
		s, err := c.Next(timeoutOf(timeoutMs))
		if err != nil {
			return err
		}
		*out = sampleToC(s)
		return nil
	})
}

// datago_sample_free and datago_batch_free are in C (free.c): they release C memory only, and a
// caller frees every sample, so they must not cost an entry into the Go runtime.

//export datago_client_next_many
func datago_client_next_many(h C.datago_client, timeoutMs C.int32_t, maxN C.int32_t, out **C.datago_sample,
	n *C.int32_t, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		if out == nil || n == nil || maxN < 1 {
			return misuse("out and n must not be NULL, max must be >= 1")
		}
		*n = 0
		faultPoints.Hit("abi")
		c, err := clients.get(uint64(h))
		if err != nil {
			return err
		}
		samples, err := c.NextMany(timeoutOf(timeoutMs), int(maxN))
		if err != nil {
			return err
		}
		dst := unsafe.Slice(out, int(maxN))
		for i, s := range samples {
			dst[i] = sampleToC(s)
		}
		*n = C.int32_t(len(samples))
		return nil
	})
}

//export datago_client_delivered
func datago_client_delivered(h C.datago_client, n C.int32_t, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		c, err := clients.get(uint64(h))
		if err != nil {
			return err
		}
		c.Delivered(int(n))
		return nil
	})
}

//export datago_client_next_batch
func datago_client_next_batch(h C.datago_client, timeoutMs C.int32_t, out **C.datago_batch, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		if out == nil {
			return misuse("out must not be NULL")
		}
		*out = nil
		c, err := clients.get(uint64(h))
		if err != nil {
			return err
		}
		b, err := c.NextBatch(timeoutOf(timeoutMs))
		if err != nil {
			return err
		}
		*out = batchToC(b)
		return nil
	})
}

//export datago_client_batch_size
func datago_client_batch_size(h C.datago_client, out *C.int32_t, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		if out == nil {
			return misuse("out must not be NULL")
		}
		c, err := clients.get(uint64(h))
		if err != nil {
			return err
		}
		*out = C.int32_t(c.Config().BatchSize)
		return nil
	})
}

//export datago_client_state
func datago_client_state(h C.datago_client, out **C.char, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		return handleJSON(clients, uint64(h), out, func(c *datago.Client) any { return c.State() })
	})
}

//export datago_client_stats
func datago_client_stats(h C.datago_client, out **C.char, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		return handleJSON(clients, uint64(h), out, func(c *datago.Client) any { return c.Stats() })
	})
}

//export datago_client_stop
func datago_client_stop(h C.datago_client, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		c, err := clients.get(uint64(h))
		if err != nil {
			return err
		}
		c.Stop()
		return nil
	})
}

//export datago_client_free
func datago_client_free(h C.datago_client) {
	callVoid(func() {
		if c, ok := clients.remove(uint64(h)); ok {
			c.Stop()
		}
	})
}

//export datago_client_skips
func datago_client_skips(h C.datago_client, out **C.char, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		return handleJSON(clients, uint64(h), out, func(c *datago.Client) any { return skips(c) })
	})
}

//export datago_client_errors
func datago_client_errors(h C.datago_client, out **C.char, errOut **C.char) C.int32_t {
	return datago_client_skips(h, out, errOut)
}

//export datago_buckets
func datago_buckets(size, ratio C.int32_t, minAR, maxAR C.double, out **C.char, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		for key, v := range map[string]C.double{"min_aspect_ratio": minAR, "max_aspect_ratio": maxAR} {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return &datago.ConfigError{Key: "image_config." + key, Msg: fmt.Sprintf("must be a finite number, got %v", float64(v))}
			}
		}
		cfg := fmt.Sprintf(`{"crop_and_resize": true, "default_image_size": %d, "downsampling_ratio": %d, "min_aspect_ratio": %v, "max_aspect_ratio": %v}`,
			int32(size), int32(ratio), float64(minAR), float64(maxAR))
		ic, err := datago.ParseImageConfig([]byte(cfg))
		if err != nil {
			return err
		}
		pairs := make([][2]int, len(ic.Buckets))
		for i, b := range ic.Buckets {
			pairs[i] = [2]int{b.Width, b.Height}
		}
		return jsonOut(pairs, out)
	})
}

//export datago_catalog_new
func datago_catalog_new(config *C.char, out *C.datago_catalog, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		if config == nil || out == nil {
			return misuse("config and out must not be NULL")
		}
		syncEnviron()
		cfg, err := datago.ParseConfig([]byte(C.GoString(config)))
		if err != nil {
			return err
		}
		k, err := datago.NewCatalog(cfg)
		if err != nil {
			return err
		}
		*out = C.datago_catalog(catalogs.add(k))
		return nil
	})
}

//export datago_catalog_len
func datago_catalog_len(h C.datago_catalog) C.int64_t {
	n := C.int64_t(-1)
	callVoid(func() {
		if k, err := catalogs.get(uint64(h)); err == nil {
			n = C.int64_t(k.Len())
		}
	})
	return n
}

//export datago_catalog_ids
func datago_catalog_ids(h C.datago_catalog, out **C.char, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		return handleJSON(catalogs, uint64(h), out, func(k *datago.Catalog) any { return k.IDs() })
	})
}

//export datago_catalog_get
func datago_catalog_get(h C.datago_catalog, indices *C.int64_t, n C.int32_t, out **C.datago_sample, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		if n < 0 || (n > 0 && (indices == nil || out == nil)) {
			return misuse("indices and out must hold n >= 0 entries")
		}
		k, err := catalogs.get(uint64(h))
		if err != nil || n == 0 {
			return err
		}
		idx := make([]int, n)
		for i, x := range unsafe.Slice(indices, int(n)) {
			idx[i] = int(x)
		}
		samples, err := k.Get(idx)
		if err != nil {
			return err
		}
		dst := unsafe.Slice(out, int(n))
		for i, s := range samples {
			dst[i] = nil
			if s != nil {
				dst[i] = sampleToC(s)
			}
		}
		return nil
	})
}

//export datago_catalog_stats
func datago_catalog_stats(h C.datago_catalog, out **C.char, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		return handleJSON(catalogs, uint64(h), out, func(k *datago.Catalog) any { return k.Stats() })
	})
}

//export datago_catalog_skips
func datago_catalog_skips(h C.datago_catalog, out **C.char, errOut **C.char) C.int32_t {
	return call(errOut, func() error {
		return handleJSON(catalogs, uint64(h), out, func(k *datago.Catalog) any { return skips(k) })
	})
}

//export datago_catalog_errors
func datago_catalog_errors(h C.datago_catalog, out **C.char, errOut **C.char) C.int32_t {
	return datago_catalog_skips(h, out, errOut)
}

//export datago_catalog_free
func datago_catalog_free(h C.datago_catalog) {
	callVoid(func() { catalogs.remove(uint64(h)) })
}

//export datago_free
func datago_free(p unsafe.Pointer) { callFree(func() { C.free(p) }) }

// The fork hooks always run, poisoned or not: prepare and parent must pair up (the second
// unlocks what the first locked).

//export datago_fork_prepare
func datago_fork_prepare() { callFree(datago.HoldForFork) }

//export datago_fork_parent
func datago_fork_parent() { callFree(datago.ReleaseAfterFork) }

//export datago_fork_child_init
func datago_fork_child_init() { callFree(datago.PrepareForkedChild) }
