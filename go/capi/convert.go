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
	"sync"
	"time"
	"unsafe"

	"github.com/datago-dev/datago/datago"
)

// call runs the body of an export that returns a status. fn's error becomes the status and the
// message in *errOut; a panic in fn becomes DATAGO_ERR_INTERNAL; a poisoned library does not run fn.
func call(errOut **C.char, fn func() error) C.int32_t {
	var err error
	if refused := lib.run(func() { err = fn() }); refused != nil {
		err = refused
	}
	return status(err, errOut)
}

// callVoid runs the body of an export that cannot report a status (it frees a handle): skipped
// once the library is poisoned, since it would touch Go state; a panic poisons the library.
func callVoid(fn func()) { _ = lib.run(fn) }

// callFree runs the body of an export that only releases C memory: always run, since no Go state
// is involved; a panic still poisons the library.
func callFree(fn func()) { _ = lib.protect(fn) }

// status is the ABI status of err (nil: DATAGO_OK); for an error status, *errOut (when the caller
// asked for it) receives the message. END and TIMEOUT carry no message.
func status(err error, errOut **C.char) C.int32_t {
	var code C.int32_t
	var internal *internalError
	var config *datago.ConfigError
	switch {
	case err == nil:
		return C.DATAGO_OK
	case errors.Is(err, datago.ErrEnd):
		return C.DATAGO_END
	case errors.Is(err, datago.ErrTimeout):
		return C.DATAGO_TIMEOUT
	case errors.As(err, &internal):
		code = C.DATAGO_ERR_INTERNAL
	case errors.As(err, &config):
		code = C.DATAGO_ERR_CONFIG
	case errors.Is(err, datago.ErrState):
		code = C.DATAGO_ERR_STATE
	default:
		code = C.DATAGO_ERR_RUNTIME
	}
	if errOut != nil {
		*errOut = C.CString(err.Error())
	}
	return code
}

// version is datago_version's static string.
var version = sync.OnceValue(func() *C.char { return C.CString(datago.Version) })

// misuse is the error of a NULL or inconsistent argument.
func misuse(msg string) error { return fmt.Errorf("%w: %s", datago.ErrState, msg) }

// timeoutOf converts the ABI's timeout_ms (negative: forever) for Client.Next.
func timeoutOf(ms C.int32_t) time.Duration {
	if ms < 0 {
		return -1
	}
	return time.Duration(ms) * time.Millisecond
}

// jsonOut stores the JSON of v in *out (a string the caller frees with datago_free).
func jsonOut(v any, out **C.char) error {
	if out == nil {
		return misuse("out must not be NULL")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	*out = C.CString(string(b))
	return nil
}

// handleJSON stores in *out the JSON of what(object of handle h in t).
func handleJSON[T any](t *table[T], h uint64, out **C.char, what func(T) any) error {
	v, err := t.get(h)
	if err != nil {
		return err
	}
	return jsonOut(what(v), out)
}

// sampleToC moves a sample's C buffers into a malloc'd datago_sample; the Go sample holds none after.
func sampleToC(s *datago.Sample) *C.datago_sample {
	cs := (*C.datago_sample)(C.calloc(1, C.sizeof_datago_sample))
	cs.id = C.CString(s.ID)
	if s.Image != nil { // absent when the source delivers samples without a main image
		cs.original_width = C.int32_t(s.Image.OriginalWidth)
		cs.original_height = C.int32_t(s.Image.OriginalHeight)
		setBuffer(&cs.image, datago.TakeBuffer(s.Image))
	}
	if n := len(s.Items); n > 0 {
		cs.n_items = C.int32_t(n)
		cs.items = (*C.datago_item)(C.calloc(C.size_t(n), C.sizeof_datago_item))
		items := unsafe.Slice(cs.items, n)
		for i, it := range s.Items {
			items[i].name = C.CString(it.Name)
			items[i].kind = C.int32_t(it.Kind)
			if it.Image != nil {
				setBuffer(&items[i].buf, datago.TakeBuffer(it.Image))
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

// batchToC moves a batch's image buffer into a malloc'd datago_batch and frees what is left of it
// (the samples' extras, which batches do not deliver).
func batchToC(b *datago.Batch) *C.datago_batch {
	n := len(b.Samples)
	cb := (*C.datago_batch)(C.calloc(1, C.sizeof_datago_batch))
	cb.size = C.int32_t(n)
	setBuffer(&cb.images, datago.TakeBuffer(b.Images))
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
	b.Free()
	return cb
}

func setBuffer(dst *C.datago_buffer, b datago.Buffer) {
	dst.data = (*C.uint8_t)(b.Data)
	dst.len = C.size_t(b.Len)
	dst.width = C.int32_t(b.Width)
	dst.height = C.int32_t(b.Height)
	dst.channels = C.int32_t(b.Channels)
	dst.bit_depth = C.int32_t(b.BitDepth)
}
