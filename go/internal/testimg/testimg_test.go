package testimg

import (
	"bytes"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"testing"
)

func TestEncodersRoundTrip(t *testing.T) {
	want := Gradient(40, 30, 7)
	got, err := png.Decode(bytes.NewReader(PNG(t, want)))
	if err != nil || got.Bounds() != want.Bounds() || got.At(39, 29) != want.At(39, 29) {
		t.Fatalf("png: %v %v", err, got.Bounds())
	}
	j, err := jpeg.Decode(bytes.NewReader(JPEG(t, want, 90)))
	if err != nil || j.Bounds() != image.Rect(0, 0, 40, 30) {
		t.Fatalf("jpeg: %v", err)
	}
}

func TestWriteFolder(t *testing.T) {
	paths := WriteFolder(t, t.TempDir(), 4, 8, 6)
	if len(paths) != 4 {
		t.Fatal(paths)
	}
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if _, _, blue, _ := img.At(0, 0).RGBA(); err != nil || blue>>8 != uint32(i) {
			t.Fatalf("%s: %v", p, err)
		}
	}
}
