package imaging

/*
#include <stdlib.h>
#include "codec.h"
#include "vips.h"
*/
import "C"

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

// libvips 8.14 has one error buffer for the whole process (vips_error appends to a static
// buffer under a global lock), and no per-thread or per-call variant: vips_error_freeze is
// process-wide too, and upstream still has no way to tie a message to its call (libvips issue
// #5010). Warnings also land there (libjpeg's "Corrupt JPEG data" of a file that decodes fine),
// so text read after a failure may be anyone's. datago's own C helpers therefore never call
// vips_error(): they write into the dg_output/dg_header err buffers of the call. For libvips'
// own text, errGate makes the buffer private for the one call that needs it: every Process call
// holds errGate shared and never reads the buffer; a call that failed inside libvips runs again
// (same bytes, same plan: libvips decodes deterministically) with errGate held exclusively,
// after clearing the buffer, so what the buffer holds afterwards is that call's text and nothing
// else. Successful calls pay one uncontended RLock; a failing file costs a second decode, during
// which the other workers wait (dg_prescan keeps hostile files cheap to decode).
var errGate sync.RWMutex

// errPending marks a failure whose libvips text could not be read safely (errGate was shared).
var errPending = errors.New("imaging: libvips failed; message pending")

// codecErrorMaxPixels bounds the decode that dg_codec_error runs for a message.
const codecErrorMaxPixels = 1 << 24

// callError builds the error of a failed C call: datago's own message when the C side wrote
// one; with capture (errGate held exclusively) libvips' text, followed by libjpeg's or libpng's
// when it adds something (libvips often says only "libpng read error"); without capture,
// errPending. The result names the file's format.
func callError(data []byte, own, codec *[C.DG_ERR_LEN]C.char, capture bool) error {
	if msg := cString(own); msg != "" {
		return errors.New(named(data, msg))
	}
	if !capture {
		return errPending
	}
	msg, detail := vipsError(), cString(codec)
	if detail == "" {
		detail = codecError(data)
	}
	switch {
	case msg == "" && detail == "":
		msg = "libvips failed without a message"
	case msg == "":
		msg = detail
	case detail != "" && !strings.Contains(msg, strings.TrimPrefix(detail, formatName(data)+": ")):
		msg += "; " + detail
	}
	return errors.New(named(data, msg))
}

// codecError is libjpeg's or libpng's message for data, "" if none.
func codecError(data []byte) string {
	loader := C.int(C.DG_LOADER_OTHER)
	switch formatName(data) {
	case "jpeg":
		loader = C.DG_LOADER_JPEG
	case "png":
		loader = C.DG_LOADER_PNG
	default:
		return ""
	}
	var msg [C.DG_ERR_LEN]C.char
	C.dg_codec_error(unsafe.Pointer(&data[0]), C.size_t(len(data)), loader, codecErrorMaxPixels, &msg[0], C.DG_ERR_LEN)
	return cString(&msg)
}

func clearVipsError() { C.dg_clear_error() }

func cString(b *[C.DG_ERR_LEN]C.char) string {
	return oneLine(C.GoString((*C.char)(unsafe.Pointer(&b[0]))))
}

// formatName names the format the signature says (what dg_sniff picks the loader by).
func formatName(data []byte) string {
	switch {
	case len(data) >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF:
		return "jpeg"
	case bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")):
		return "png"
	case len(data) >= 12 && bytes.HasPrefix(data, []byte("RIFF")) && string(data[8:12]) == "WEBP":
		return "webp"
	}
	return ""
}

// named prefixes msg with the format unless it already says it (libvips' "VipsJpeg: ...").
func named(data []byte, msg string) string {
	f := formatName(data)
	if f == "" || strings.Contains(strings.ToLower(msg), f) {
		return msg
	}
	return f + ": " + msg
}

// prescan runs dg_prescan: the bytes the decoders may see (data itself, or a cleaned copy in C
// memory, released by done), or an error naming the cause.
func prescan(data []byte) (clean []byte, done func(), err error) {
	var out unsafe.Pointer
	var n C.size_t
	var msg [C.DG_ERR_LEN]C.char
	switch C.dg_prescan(unsafe.Pointer(&data[0]), C.size_t(len(data)), &out, &n, &msg[0], C.DG_ERR_LEN) {
	case 0:
		return data, func() {}, nil
	case 1:
		return unsafe.Slice((*byte)(out), int(n)), func() { C.free(out) }, nil
	default:
		return nil, nil, fmt.Errorf("%w: %s", ErrDecode, cString(&msg))
	}
}
