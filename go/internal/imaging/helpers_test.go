package imaging

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"testing"
)

// rgbPixels returns packed 8-bit RGB pixels, as Process outputs them.
func rgbPixels(w, h int, at func(x, y int) color.NRGBA) []byte {
	pix := make([]byte, 0, w*h*3)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := at(x, y)
			pix = append(pix, c.R, c.G, c.B)
		}
	}
	return pix
}

func nrgbaImage(w, h int, at func(x, y int) color.NRGBA) *image.NRGBA {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			img.SetNRGBA(x, y, at(x, y))
		}
	}
	return img
}

// stripes has three vertical bands, red | green | blue, each a third of the width.
func stripes(w, h int) func(x, y int) color.NRGBA {
	return func(x, y int) color.NRGBA {
		switch {
		case x < w/3:
			return color.NRGBA{255, 0, 0, 255}
		case x < 2*w/3:
			return color.NRGBA{0, 255, 0, 255}
		default:
			return color.NRGBA{0, 0, 255, 255}
		}
	}
}

// gradient is smooth enough to survive JPEG and resampling in recognisable shape.
func gradient(w, h int) func(x, y int) color.NRGBA {
	return func(x, y int) color.NRGBA {
		return color.NRGBA{uint8(x * 255 / max(1, w-1)), uint8(y * 255 / max(1, h-1)), 128, 255}
	}
}

// rawPNG writes a PNG the standard library cannot produce (grey+alpha, arbitrary chunks).
// rows holds the unfiltered pixel rows back to back.
func rawPNG(t testing.TB, w, h int, colorType, depth byte, rows []byte, extra ...[]byte) []byte {
	t.Helper()
	var out bytes.Buffer
	out.WriteString("\x89PNG\r\n\x1a\n")
	chunk := func(typ string, data []byte) {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(data)))
		out.Write(n[:])
		crc := crc32.NewIEEE()
		crc.Write([]byte(typ))
		crc.Write(data)
		out.WriteString(typ)
		out.Write(data)
		binary.BigEndian.PutUint32(n[:], crc.Sum32())
		out.Write(n[:])
	}
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = depth, colorType
	chunk("IHDR", ihdr)
	for i := 0; i+1 < len(extra); i += 2 {
		chunk(string(extra[i]), extra[i+1])
	}
	stride := len(rows) / h
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	for y := 0; y < h; y++ {
		zw.Write([]byte{0}) // filter: none
		zw.Write(rows[y*stride : (y+1)*stride])
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return out.Bytes()
}

// withOrientation inserts an EXIF APP1 segment carrying only the Orientation tag right after
// the SOI marker of a JPEG.
func withOrientation(jpg []byte, orientation uint16) []byte {
	var app1 bytes.Buffer
	app1.WriteString("Exif\x00\x00")
	app1.WriteString("MM\x00\x2a\x00\x00\x00\x08") // big-endian TIFF, IFD0 at offset 8
	binary.Write(&app1, binary.BigEndian, uint16(1))
	binary.Write(&app1, binary.BigEndian, []uint16{0x0112, 3}) // Orientation, SHORT
	binary.Write(&app1, binary.BigEndian, uint32(1))
	binary.Write(&app1, binary.BigEndian, []uint16{orientation, 0})
	binary.Write(&app1, binary.BigEndian, uint32(0)) // no next IFD
	var out bytes.Buffer
	out.Write(jpg[:2])
	out.Write([]byte{0xFF, 0xE1})
	binary.Write(&out, binary.BigEndian, uint16(app1.Len()+2))
	out.Write(app1.Bytes())
	out.Write(jpg[2:])
	return out.Bytes()
}

func mustProcess(t testing.TB, data []byte, opts *Options) *Image {
	t.Helper()
	im, err := Process(data, opts)
	if err != nil {
		t.Fatalf("Process: %v", err)
	}
	t.Cleanup(im.Free)
	return im
}

func checkShape(t testing.TB, im *Image, w, h, channels int) {
	t.Helper()
	if im.Width != w || im.Height != h || im.Channels != channels || im.Encoded || im.Len != w*h*channels ||
		len(im.Bytes()) != im.Len {
		t.Fatalf("got %dx%dx%d (len %d, encoded %v), want %dx%dx%d",
			im.Width, im.Height, im.Channels, im.Len, im.Encoded, w, h, channels)
	}
}

// pixel returns the channels of the pixel at (x, y).
func pixel(im *Image, x, y int) []byte {
	i := (y*im.Width + x) * im.Channels
	return im.Bytes()[i : i+im.Channels]
}

func near(got []byte, want []byte, tol int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		d := int(got[i]) - int(want[i])
		if d < -tol || d > tol {
			return false
		}
	}
	return true
}
