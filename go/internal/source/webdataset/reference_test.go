package webdataset

import (
	"os"
	"path/filepath"
	"testing"
)

// reference_image_type picks the main image; the other image members become masks (mask, seg)
// or additional images; without it they stay bytes, as before.
func TestReferenceImageType(t *testing.T) {
	shard := filepath.Join(t.TempDir(), "s.tar")
	data := wdsTar(t,
		wdsMember{name: "a.jpg", data: "jpeg bytes"},
		wdsMember{name: "a.png", data: "png bytes"},
		wdsMember{name: "a.seg.png", data: "seg"},
		wdsMember{name: "a.fg_mask.png", data: "mask"},
		wdsMember{name: "a.depth.webp", data: "depth"},
		wdsMember{name: "a.npy", data: "latent"},
		wdsMember{name: "b.jpg", data: "jpeg only"},
	)
	if err := os.WriteFile(shard, data, 0o644); err != nil {
		t.Fatal(err)
	}
	l := listWDS(t, Config{Shards: []string{shard}, ReferenceImage: "png"})
	if len(l.items) != 1 || len(l.skipped["missing_image"]) != 1 {
		t.Fatalf("items %v, skipped %v", l.ids(), l.skipped)
	}
	raw := l.items[0].Raw
	if string(raw.Image) != "png bytes" || len(raw.Masks) != 2 || len(raw.AdditionalImages) != 2 || len(raw.Bytes) != 1 {
		t.Fatalf("image %q, %d masks, %d additional, %d bytes", raw.Image, len(raw.Masks), len(raw.AdditionalImages), len(raw.Bytes))
	}
	if raw.Masks[0].Name != "seg.png" || raw.Masks[1].Name != "fg_mask.png" ||
		raw.AdditionalImages[0].Name != "jpg" || raw.AdditionalImages[1].Name != "depth.webp" || raw.Bytes[0].Name != "npy" {
		t.Fatalf("masks %v, additional %v", raw.Masks, raw.AdditionalImages)
	}
	// Without it: the first of image_keys, the rest as bytes.
	l = listWDS(t, Config{Shards: []string{shard}})
	if len(l.items) != 2 {
		t.Fatalf("items %v", l.ids())
	}
	raw = l.items[0].Raw
	if string(raw.Image) != "jpeg bytes" || len(raw.Masks)+len(raw.AdditionalImages) != 0 || len(raw.Bytes) != 5 {
		t.Fatalf("image %q, %d masks, %d additional, %d bytes", raw.Image, len(raw.Masks), len(raw.AdditionalImages), len(raw.Bytes))
	}
	wc, err := parseConfig(t, `"url": "`+shard+`", "reference_image_type": ".PNG"`)
	if err != nil || wc.ReferenceImage != "png" {
		t.Fatalf("%v %q", err, wc.ReferenceImage)
	}
}
