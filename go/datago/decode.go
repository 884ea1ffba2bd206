package datago

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/datago-dev/datago/internal/bucket"
	"github.com/datago-dev/datago/internal/imaging"
	"github.com/datago-dev/datago/internal/source"
)

// decode is one decoder: it turns each fetched item into a sample, or into a skip, and hands the
// outcome to emit (false: stopping).
func (p *pipeline) decode(in <-chan fetchedItem, emit func(outcome) bool) {
	for {
		var f fetchedItem
		select {
		case v, ok := <-in:
			if !ok {
				return
			}
			f = v
		case <-p.ctx.Done(): // a fetcher stuck in a read must not keep the decoders waiting
			return
		}
		o := outcome{seqItem: f.seqItem}
		if f.raw != nil {
			p.c.stages.clock[stDecode].enter()
			o.sample = p.decodeOne(f)
			p.c.stages.clock[stDecode].leave()
		}
		if o.sample != nil && f.batchLen > 0 && !p.inBucket(o.sample, f) {
			o.sample.Free()
			o.sample = nil
		}
		if o.sample == nil && p.c.planned != nil {
			o.sample = p.substitute(f)
		}
		if o.sample == nil {
			p.c.progress.Mark(f.epoch, f.seq) // a skipped item is done: it would be skipped again
		} else {
			o.sample.epoch, o.sample.seq, o.sample.pad = f.epoch, f.seq, f.pad
		}
		if !emit(o) {
			return
		}
	}
}

// substitute makes, in a planned run, a sample for the slot of the bad item f from another of the
// share's own items, so that every share still delivers the same number of samples.
func (p *pipeline) substitute(f fetchedItem) *Sample {
	for k := 1; k <= maxSubstitutes && p.ctx.Err() == nil; k++ {
		it, ok := p.c.planned.substitute(f.epoch, f.seq, k)
		if !ok {
			return nil
		}
		g := fetchedItem{seqItem: seqItem{Item: it, epoch: f.epoch, seq: f.seq, gseq: f.gseq}, raw: p.fetchOne(it)}
		if g.raw == nil {
			continue
		}
		if s := p.decodeOne(g); s != nil {
			if f.batchLen > 0 && !p.inBucket(s, g) {
				s.Free()
				continue
			}
			p.c.stat.subst.Add(1)
			return s
		}
	}
	return nil
}

// inBucket checks that a sample of a planned batch came out in the bucket its header gave (they
// agree unless the file changed since the header pass); one that did not is skipped.
func (p *pipeline) inBucket(s *Sample, f fetchedItem) bool {
	b := p.c.planned.bucketOf(f.epoch, f.seq)
	if s.Image == nil || b < 0 || int(b) >= len(p.c.opts.Buckets) {
		p.c.stat.skip(f.ID, ReasonNoBatch, fmt.Errorf("a sample without a main image cannot join a batch"))
		return false
	}
	want := p.c.opts.Buckets[b]
	if s.Image.Width != want.Width || s.Image.Height != want.Height {
		p.c.stat.skip(f.ID, ReasonInternal, fmt.Errorf("decoded as %dx%d, but its header gave the %dx%d bucket (did the file change?)",
			s.Image.Width, s.Image.Height, want.Width, want.Height))
		return false
	}
	return true
}

// decodeOne processes one fetched item; a failure, a panic included, is counted and reported.
func (p *pipeline) decodeOne(f fetchedItem) (s *Sample) {
	c := p.c
	defer func() {
		if r := recover(); r != nil {
			s.Free()
			s = nil
			c.skipPanic(f.ID, r)
		}
	}()
	p.faults.Hit("decode")
	s, err := c.assemble(f.ID, f.raw)
	if err != nil {
		reason := ReasonDecodeError
		switch {
		case errors.Is(err, imaging.ErrTooLarge):
			reason = ReasonTooLarge
		case errors.Is(err, imaging.ErrEmpty):
			reason = ReasonEmpty
		}
		c.stat.skip(f.ID, reason, err)
		return nil
	}
	return s
}

// assemble processes the main image, then the masks and additional images with the main image's
// bucket, so that a crop keeps them pixel-aligned with it. A sample without a main image (the
// dataroom source with require_images false) gets its masks and additional images in their own buckets.
func (c *Client) assemble(id string, raw *source.Raw) (*Sample, error) {
	s := &Sample{ID: id}
	if !raw.NoImage {
		img, err := imaging.Process(raw.Image, &c.opts)
		if err != nil {
			return nil, err
		}
		s.Image = img
		if img.Alpha != nil { // image_config.alpha_mask: the main image's alpha, as a mask
			s.Items = append(s.Items, SampleItem{Name: c.cfg.Image.AlphaMask, Kind: ItemMask, Image: img.Alpha})
			img.Alpha = nil
		}
	}
	extra := func(kind ItemKind, members []source.Named) error {
		opts := c.opts
		opts.AlphaMask = false // the main image's only
		// With pre_encode_images, masks and additional images are encoded too, as PNG (lossless,
		// as the Rust loader does), whatever encode_format says for the main image.
		opts.Mask, opts.Format = kind == ItemMask, imaging.FormatPNG
		if opts.CropAndResize && s.Image != nil {
			opts.Target = &bucket.Bucket{Width: s.Image.Width, Height: s.Image.Height}
		}
		for _, m := range members {
			im, err := imaging.Process(m.Data, &opts)
			if err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
			s.Items = append(s.Items, SampleItem{Name: m.Name, Kind: kind, Image: im})
		}
		return nil
	}
	if err := extra(ItemMask, raw.Masks); err != nil {
		s.Free()
		return nil, err
	}
	if err := extra(ItemAdditionalImage, raw.AdditionalImages); err != nil {
		s.Free()
		return nil, err
	}
	for _, b := range raw.Bytes {
		s.Items = append(s.Items, SampleItem{Name: b.Name, Kind: ItemBytes, Bytes: b.Data})
	}
	meta := raw.Meta
	if sizes := itemSizes(s.Items); sizes != nil {
		// Masks and additional images have their own size before processing (the Rust loader's
		// payloads carry it): delivered in the metadata, which the C ABI already has.
		meta = make(map[string]any, len(raw.Meta)+1)
		for k, v := range raw.Meta {
			meta[k] = v
		}
		meta["item_original_sizes"] = sizes
	}
	if len(meta) > 0 {
		var err error
		if s.Meta, err = json.Marshal(meta); err != nil {
			s.Free()
			return nil, fmt.Errorf("metadata: %w", err)
		}
	}
	return s, nil
}

// itemSizes maps the name of each decoded mask or additional image to its [width, height] before
// processing; nil when the sample has none.
func itemSizes(items []SampleItem) map[string][2]int {
	var sizes map[string][2]int
	for _, it := range items {
		if it.Image == nil {
			continue
		}
		if sizes == nil {
			sizes = make(map[string][2]int)
		}
		sizes[it.Name] = [2]int{it.Image.OriginalWidth, it.Image.OriginalHeight}
	}
	return sizes
}
