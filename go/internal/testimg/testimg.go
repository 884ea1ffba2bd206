// Package testimg makes the images Go tests feed the loader: encoded with the standard library's
// encoders (an independent reference for the decoders under test), and written as folders for the
// filesystem source. Pure Go, since cgo is not allowed in _test.go files.
package testimg

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"
)

// PNG encodes img.
func PNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// JPEG encodes img at quality (1-100).
func JPEG(t testing.TB, img image.Image, quality int) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: quality}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Gradient is a w x h image whose red grows left to right and green top to bottom; blue tells
// images of the same size apart.
func Gradient(w, h int, blue uint8) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.Set(x, y, color.RGBA{uint8(x * 255 / w), uint8(y * 255 / h), blue, 255})
		}
	}
	return img
}

// GradientPNG is the PNG of Gradient(w, h, blue).
func GradientPNG(t testing.TB, w, h int, blue uint8) []byte { return PNG(t, Gradient(w, h, blue)) }

// WriteFolder writes n w x h gradient PNGs under root, spread over three subfolders, and returns
// their paths.
func WriteFolder(t testing.TB, root string, n, w, h int) []string {
	t.Helper()
	var paths []string
	for i := 0; i < n; i++ {
		p := filepath.Join(root, fmt.Sprintf("d%d", i%3), fmt.Sprintf("img%04d.png", i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, GradientPNG(t, w, h, uint8(i)), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}
