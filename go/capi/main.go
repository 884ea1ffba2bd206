// Command capi is built with -buildmode=c-shared into libdatago.so; this file is its whole C ABI,
// declared in datago.h (which cgo includes here, so a drifting signature fails the build).
//
// Ownership: inputs are borrowed for the call. Everything returned is C memory from malloc, owned
// by the caller until it calls datago_free / datago_sample_free.
// Go objects never cross: clients are integer handles into a table. Every export recovers panics
// into DATAGO_ERR_INTERNAL so that no panic unwinds into the host process.
package main

/*
#include <stdlib.h>
#include "datago.h"
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"time"
	"unsafe"

	"github.com/datago-dev/datago/datago"
	"github.com/datago-dev/datago/internal/imaging"
)

func main() {}

var handles = struct {
	sync.Mutex
	next     uint64
	clients  map[uint64]*datago.Client
	catalogs map[uint64]*datago.Catalog
}{clients: map[uint64]*datago.Client{}, catalogs: map[uint64]*datago.Catalog{}}

func lookupCatalog(h C.datago_catalog) (*datago.Catalog, error) {
	handles.Lock()
	defer handles.Unlock()
	k, ok := handles.catalogs[uint64(h)]
	if !ok {
		return nil, fmt.Errorf("%w: unknown or freed catalog handle %d", datago.ErrState, uint64(h))
	}
	return k, nil
}

func lookup(h C.datago_client) (*datago.Client, error) {
	handles.Lock()
	defer handles.Unlock()
	c, ok := handles.clients[uint64(h)]
	if !ok {
		return nil, fmt.Errorf("%w: unknown or freed client handle %d", datago.ErrState, uint64(h))
	}
	return c, nil
}

func init() {
	// The caller's thread (Python's) enters Go for every sample and needs a P to run on; with
	// one P per core all of them can be held by decoding workers, and the caller then waits for
	// one to be released. One more P than cores lets it in at once: +7-12% samples/s from
	// Python on 2 cores (tests/bench, cases B and H).
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.NumCPU() + 1)
	}
}

// fail stores msg in *errOut (when the caller asked for it) and returns the status of err.
func fail(err error, errOut **C.char) C.int32_t {
	if errOut != nil {
		*errOut = C.CString(err.Error())
	}
	var ce *datago.ConfigError
	switch {
	case errors.As(err, &ce):
		return C.DATAGO_ERR_CONFIG
	case errors.Is(err, datago.ErrState):
		return C.DATAGO_ERR_STATE
	}
	return C.DATAGO_ERR_RUNTIME
}

// guard turns a panic into DATAGO_ERR_INTERNAL; deferred by every export that returns a status.
func guard(status *C.int32_t, errOut **C.char) {
	if r := recover(); r != nil {
		*status = C.DATAGO_ERR_INTERNAL
		if errOut != nil {
			*errOut = C.CString(fmt.Sprintf("datago internal error: %v\n%s", r, debug.Stack()))
		}
	}
}

//export datago_abi_version
func datago_abi_version() C.int32_t { return C.DATAGO_ABI_VERSION }

var version = sync.OnceValue(func() *C.char { return C.CString(datago.Version) })

//export datago_version
func datago_version() *C.char { return version() }

//export datago_client_new
func datago_client_new(config *C.char, out *C.datago_client, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	if config == nil || out == nil {
		return fail(fmt.Errorf("%w: config and out must not be NULL", datago.ErrState), errOut)
	}
	c, err := datago.NewFromJSON([]byte(C.GoString(config)))
	if err != nil {
		return fail(err, errOut)
	}
	handles.Lock()
	handles.next++
	h := handles.next
	handles.clients[h] = c
	handles.Unlock()
	*out = C.datago_client(h)
	return C.DATAGO_OK
}

//export datago_client_start
func datago_client_start(h C.datago_client, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	c, err := lookup(h)
	if err == nil {
		err = c.Start()
	}
	if err != nil {
		return fail(err, errOut)
	}
	return C.DATAGO_OK
}

//export datago_client_next
func datago_client_next(h C.datago_client, timeoutMs C.int32_t, out **C.datago_sample, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	if out == nil {
		return fail(fmt.Errorf("%w: out must not be NULL", datago.ErrState), errOut)
	}
	*out = nil
	c, err := lookup(h)
	if err != nil {
		return fail(err, errOut)
	}
	s, err := c.Next(timeoutOf(timeoutMs))
	if err != nil {
		return nextStatus(err, errOut)
	}
	*out = toC(s)
	return C.DATAGO_OK
}

// timeoutOf converts the ABI's timeout_ms (negative: forever) for Client.Next.
func timeoutOf(ms C.int32_t) time.Duration {
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// nextStatus is the status of a failed Next or NextBatch.
func nextStatus(err error, errOut **C.char) C.int32_t {
	switch {
	case errors.Is(err, datago.ErrEnd):
		return C.DATAGO_END
	case errors.Is(err, datago.ErrTimeout):
		return C.DATAGO_TIMEOUT
	}
	return fail(err, errOut)
}

// toC moves a sample's C buffers into a malloc'd datago_sample; the Go sample must not be freed after.
func toC(s *datago.Sample) *C.datago_sample {
	cs := (*C.datago_sample)(C.calloc(1, C.sizeof_datago_sample))
	cs.id = C.CString(s.ID)
	if s.Image != nil { // absent when the source delivers samples without a main image
		cs.original_width = C.int32_t(s.Image.OriginalWidth)
		cs.original_height = C.int32_t(s.Image.OriginalHeight)
		setBuffer(&cs.image, s.Image)
	}
	if n := len(s.Items); n > 0 {
		cs.n_items = C.int32_t(n)
		cs.items = (*C.datago_item)(C.calloc(C.size_t(n), C.sizeof_datago_item))
		items := unsafe.Slice(cs.items, n)
		for i, it := range s.Items {
			items[i].name = C.CString(it.Name)
			items[i].kind = C.int32_t(it.Kind)
			if it.Image != nil {
				setBuffer(&items[i].buf, it.Image)
			} else if len(it.Bytes) > 0 {
				items[i].buf.data = (*C.uint8_t)(C.CBytes(it.Bytes))
				items[i].buf.len = C.size_t(len(it.Bytes))
			}
		}
	}
	if s.Meta != nil {
		cs.meta_json = C.CString(string(s.Meta))
	}
	return cs
}

func setBuffer(b *C.datago_buffer, img *imaging.Image) {
	if img == nil {
		return
	}
	b.data = (*C.uint8_t)(img.Data)
	b.len = C.size_t(img.Len)
	b.width = C.int32_t(img.Width)
	b.height = C.int32_t(img.Height)
	b.channels = C.int32_t(img.Channels)
	img.Data = nil // ownership moved to the C struct
}

//export datago_sample_free
func datago_sample_free(s *C.datago_sample) {
	defer func() { _ = recover() }()
	if s == nil {
		return
	}
	C.free(unsafe.Pointer(s.id))
	C.free(unsafe.Pointer(s.image.data))
	if s.n_items > 0 {
		for _, it := range unsafe.Slice(s.items, int(s.n_items)) {
			C.free(unsafe.Pointer(it.name))
			C.free(unsafe.Pointer(it.buf.data))
		}
	}
	C.free(unsafe.Pointer(s.items))
	C.free(unsafe.Pointer(s.meta_json))
	C.free(unsafe.Pointer(s))
}

//export datago_client_next_batch
func datago_client_next_batch(h C.datago_client, timeoutMs C.int32_t, out **C.datago_batch, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	if out == nil {
		return fail(fmt.Errorf("%w: out must not be NULL", datago.ErrState), errOut)
	}
	*out = nil
	c, err := lookup(h)
	if err != nil {
		return fail(err, errOut)
	}
	b, err := c.NextBatch(timeoutOf(timeoutMs))
	if err != nil {
		return nextStatus(err, errOut)
	}
	n := len(b.Samples)
	cb := (*C.datago_batch)(C.calloc(1, C.sizeof_datago_batch))
	cb.size = C.int32_t(n)
	setBuffer(&cb.images, b.Images)
	cb.ids = (**C.char)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(uintptr(0)))))
	cb.meta_json = (**C.char)(C.calloc(C.size_t(n), C.size_t(unsafe.Sizeof(uintptr(0)))))
	cb.original_sizes = (*C.int32_t)(C.calloc(C.size_t(2*n), C.sizeof_int32_t))
	ids, metas := unsafe.Slice(cb.ids, n), unsafe.Slice(cb.meta_json, n)
	sizes := unsafe.Slice(cb.original_sizes, 2*n)
	for i, s := range b.Samples {
		ids[i] = C.CString(s.ID)
		if s.Meta != nil {
			metas[i] = C.CString(string(s.Meta))
		}
		sizes[2*i], sizes[2*i+1] = C.int32_t(b.Sizes[i][0]), C.int32_t(b.Sizes[i][1])
	}
	b.Free() // what is left: the samples' extras, not delivered in batches
	*out = cb
	return C.DATAGO_OK
}

//export datago_batch_free
func datago_batch_free(b *C.datago_batch) {
	defer func() { _ = recover() }()
	if b == nil {
		return
	}
	n := int(b.size)
	if b.ids != nil {
		for _, p := range unsafe.Slice(b.ids, n) {
			C.free(unsafe.Pointer(p))
		}
	}
	if b.meta_json != nil {
		for _, p := range unsafe.Slice(b.meta_json, n) {
			C.free(unsafe.Pointer(p))
		}
	}
	C.free(unsafe.Pointer(b.ids))
	C.free(unsafe.Pointer(b.meta_json))
	C.free(unsafe.Pointer(b.original_sizes))
	C.free(unsafe.Pointer(b.images.data))
	C.free(unsafe.Pointer(b))
}

//export datago_client_state
func datago_client_state(h C.datago_client, out **C.char, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	c, err := lookup(h)
	if err != nil {
		return fail(err, errOut)
	}
	return jsonOut(c.State(), out, errOut)
}

//export datago_catalog_new
func datago_catalog_new(config *C.char, out *C.datago_catalog, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	if config == nil || out == nil {
		return fail(fmt.Errorf("%w: config and out must not be NULL", datago.ErrState), errOut)
	}
	cfg, err := datago.ParseConfig([]byte(C.GoString(config)))
	if err != nil {
		return fail(err, errOut)
	}
	k, err := datago.NewCatalog(cfg)
	if err != nil {
		return fail(err, errOut)
	}
	handles.Lock()
	handles.next++
	h := handles.next
	handles.catalogs[h] = k
	handles.Unlock()
	*out = C.datago_catalog(h)
	return C.DATAGO_OK
}

//export datago_catalog_len
func datago_catalog_len(h C.datago_catalog) C.int64_t {
	k, err := lookupCatalog(h)
	if err != nil {
		return -1
	}
	return C.int64_t(k.Len())
}

//export datago_catalog_ids
func datago_catalog_ids(h C.datago_catalog, out **C.char, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	k, err := lookupCatalog(h)
	if err != nil {
		return fail(err, errOut)
	}
	return jsonOut(k.IDs(), out, errOut)
}

//export datago_catalog_get
func datago_catalog_get(h C.datago_catalog, indices *C.int64_t, n C.int32_t, out **C.datago_sample, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	if n < 0 || (n > 0 && (indices == nil || out == nil)) {
		return fail(fmt.Errorf("%w: indices and out must hold n >= 0 entries", datago.ErrState), errOut)
	}
	k, err := lookupCatalog(h)
	if err != nil {
		return fail(err, errOut)
	}
	if n == 0 {
		return C.DATAGO_OK
	}
	idx := make([]int, n)
	for i, x := range unsafe.Slice(indices, int(n)) {
		idx[i] = int(x)
	}
	samples, err := k.Get(idx)
	if err != nil {
		return fail(err, errOut)
	}
	dst := unsafe.Slice(out, int(n))
	for i, s := range samples {
		dst[i] = nil
		if s != nil {
			dst[i] = toC(s)
		}
	}
	return C.DATAGO_OK
}

//export datago_catalog_stats
func datago_catalog_stats(h C.datago_catalog, out **C.char, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	k, err := lookupCatalog(h)
	if err != nil {
		return fail(err, errOut)
	}
	return jsonOut(k.Stats(), out, errOut)
}

//export datago_catalog_errors
func datago_catalog_errors(h C.datago_catalog, out **C.char, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	k, err := lookupCatalog(h)
	if err != nil {
		return fail(err, errOut)
	}
	reports := k.DrainSkips()
	if reports == nil {
		reports = []datago.SkipReport{}
	}
	return jsonOut(reports, out, errOut)
}

//export datago_catalog_free
func datago_catalog_free(h C.datago_catalog) {
	handles.Lock()
	defer handles.Unlock()
	delete(handles.catalogs, uint64(h))
}

//export datago_client_stats
func datago_client_stats(h C.datago_client, out **C.char, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	c, err := lookup(h)
	if err != nil {
		return fail(err, errOut)
	}
	return jsonOut(c.Stats(), out, errOut)
}

//export datago_client_errors
func datago_client_errors(h C.datago_client, out **C.char, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	c, err := lookup(h)
	if err != nil {
		return fail(err, errOut)
	}
	reports := c.DrainSkips()
	if reports == nil {
		reports = []datago.SkipReport{}
	}
	return jsonOut(reports, out, errOut)
}

func jsonOut(v any, out **C.char, errOut **C.char) C.int32_t {
	if out == nil {
		return fail(fmt.Errorf("%w: out must not be NULL", datago.ErrState), errOut)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fail(err, errOut)
	}
	*out = C.CString(string(b))
	return C.DATAGO_OK
}

//export datago_client_stop
func datago_client_stop(h C.datago_client, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	c, err := lookup(h)
	if err != nil {
		return fail(err, errOut)
	}
	c.Stop()
	return C.DATAGO_OK
}

//export datago_client_free
func datago_client_free(h C.datago_client) {
	defer func() { _ = recover() }()
	handles.Lock()
	c, ok := handles.clients[uint64(h)]
	delete(handles.clients, uint64(h))
	handles.Unlock()
	if ok {
		c.Stop()
	}
}

//export datago_buckets
func datago_buckets(size, ratio C.int32_t, minAR, maxAR C.double, out **C.char, errOut **C.char) (status C.int32_t) {
	defer guard(&status, errOut)
	for key, v := range map[string]C.double{"min_aspect_ratio": minAR, "max_aspect_ratio": maxAR} {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fail(&datago.ConfigError{Key: "image_config." + key, Msg: fmt.Sprintf("must be a finite number, got %v", float64(v))}, errOut)
		}
	}
	cfg := fmt.Sprintf(`{"crop_and_resize": true, "default_image_size": %d, "downsampling_ratio": %d, "min_aspect_ratio": %v, "max_aspect_ratio": %v}`,
		int32(size), int32(ratio), float64(minAR), float64(maxAR))
	ic, err := datago.ParseImageConfig([]byte(cfg))
	if err != nil {
		return fail(err, errOut)
	}
	pairs := make([][2]int, len(ic.Buckets))
	for i, b := range ic.Buckets {
		pairs[i] = [2]int{b.Width, b.Height}
	}
	return jsonOut(pairs, out, errOut)
}

//export datago_free
func datago_free(p unsafe.Pointer) { C.free(p) }

//export datago_fork_prepare
func datago_fork_prepare() { imaging.HoldForFork() }

//export datago_fork_parent
func datago_fork_parent() { imaging.ReleaseAfterFork() }

//export datago_fork_child_init
func datago_fork_child_init() { imaging.PrepareForkedChild() }
