package datago

import (
	"unsafe"

	"github.com/datago-dev/datago/internal/imaging"
)

// What the C ABI (go/capi) needs from imaging, re-exported so that capi depends on this package alone.

// Buffer is C memory taken out of an image: pixels (Channels > 0) or encoded bytes (Channels 0).
// BitDepth is 8 or 16 (host-order uint16 samples), of the encoded pixels when encoded.
// Whoever takes it frees Data with C free().
type Buffer struct {
	Data                              unsafe.Pointer
	Len                               int
	Width, Height, Channels, BitDepth int
}

// TakeBuffer moves img's C memory into the returned Buffer: img no longer owns it, so freeing img
// (or the sample or batch holding it) afterwards leaves the buffer alone. A nil img gives a zero Buffer.
func TakeBuffer(img *imaging.Image) Buffer {
	if img == nil {
		return Buffer{}
	}
	b := Buffer{Data: img.Data, Len: img.Len, Width: img.Width, Height: img.Height, Channels: img.Channels, BitDepth: img.BitDepth}
	img.Data = nil
	return b
}

// HoldForFork blocks until no thread is inside libvips and keeps them out until ReleaseAfterFork.
func HoldForFork() { imaging.HoldForFork() }

// ReleaseAfterFork lets image processing resume in the parent after fork().
func ReleaseAfterFork() { imaging.ReleaseAfterFork() }

// PrepareForkedChild must run in a forked child's fresh copy of the library before any image is processed.
func PrepareForkedChild() { imaging.PrepareForkedChild() }
