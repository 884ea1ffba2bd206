package datago

import "github.com/datago-dev/datago/internal/imaging"

// ItemKind says what a named item of a sample is; the values match the C ABI's DATAGO_ITEM_*.
type ItemKind int

const (
	ItemMask            ItemKind = 1
	ItemAdditionalImage ItemKind = 2
	ItemBytes           ItemKind = 3
)

// Sample is one delivered sample. Its images live in C memory and belong to the sample until Free,
// or until ownership is handed over (the C ABI does that).
type Sample struct {
	ID    string
	Image *imaging.Image
	Items []SampleItem
	Meta  []byte // a JSON object of source-specific metadata, or nil

	epoch int   // the epoch and position in the epoch's listing, for the resume state
	seq   int64 // (and for Catalog.Get, the position in the request)
	pad   bool  // equal_steps pad: a padding slot (a repeat), counted in Stats.Padded when delivered
}

// SampleItem is a named extra of a sample: a mask or an additional image (Image, in C memory) or
// raw bytes (Bytes, Go memory, copied when the sample crosses the C ABI).
type SampleItem struct {
	Name  string
	Kind  ItemKind
	Image *imaging.Image
	Bytes []byte
}

// Free releases the sample's C memory; safe to call twice.
func (s *Sample) Free() {
	if s == nil {
		return
	}
	if s.Image != nil {
		s.Image.Free()
	}
	for i := range s.Items {
		if s.Items[i].Image != nil {
			s.Items[i].Image.Free()
		}
	}
}

// Batch is BatchSize samples (fewer at the end of an epoch) whose images share one bucket,
// stacked in one C buffer. The samples keep their ID, metadata and original size; their images
// were moved into Images.
type Batch struct {
	Images  *imaging.Image // shape of one image; Len covers all of them
	Samples []*Sample
	Sizes   [][2]int // each sample's original width and height
}

// Free releases the batch's C memory; safe to call twice.
func (b *Batch) Free() {
	if b == nil {
		return
	}
	b.Images.Free()
	for _, s := range b.Samples {
		s.Free()
	}
}
