package imaging

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"os"
	"strconv"
	"strings"
)

// Generators of the hostile classes: files whose headers declare far more bytes than they hold,
// or compressed metadata that inflates far beyond the file.

const hugeLen = 1<<30 - 1 // what libpng's crashers declare: 1,073,741,823 bytes

func pngChunk(typ string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.WriteString(typ)
	b.Write(data)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	return b.Bytes()
}

func pngIHDR(w, h int) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8] = 8 // depth; colour type 0 (grey)
	return append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", ihdr)...)
}

func deflate(data []byte) []byte {
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestCompression)
	zw.Write(data)
	zw.Close()
	return z.Bytes()
}

// pngIDAT is the IDAT of a w x h grey image, every pixel v.
func pngIDAT(w, h int, v byte) []byte {
	rows := make([]byte, 0, (w+1)*h)
	for y := 0; y < h; y++ {
		rows = append(rows, 0)
		rows = append(rows, bytes.Repeat([]byte{v}, w)...)
	}
	return pngChunk("IDAT", deflate(rows))
}

// pngHugeChunk is libpng's crasher shape: a 1x1 header, then a chunk of typ that declares
// hugeLen bytes and holds 16. With afterPixels the whole image comes first.
func pngHugeChunk(typ string, afterPixels bool) []byte {
	out := pngIHDR(1, 1)
	if afterPixels {
		out = append(out, pngIDAT(1, 1, 7)...)
	}
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], hugeLen)
	out = append(out, hdr[:]...)
	out = append(out, typ...)
	return append(out, bytes.Repeat([]byte{'A'}, 16)...)
}

// pngTextBomb holds n zTXt (or iTXt) chunks, each inflating to inflated bytes.
func pngTextBomb(typ string, n, inflated int) []byte {
	z := deflate(make([]byte, inflated))
	var body []byte
	if typ == "zTXt" {
		body = append([]byte("Comment\x00\x00"), z...)
	} else {
		body = append([]byte("Comment\x00\x01\x00\x00\x00"), z...)
	}
	out := pngIHDR(8, 8)
	for i := 0; i < n; i++ {
		out = append(out, pngChunk(typ, body)...)
	}
	out = append(out, pngIDAT(8, 8, 7)...)
	return append(out, pngChunk("IEND", nil)...)
}

// pngICCBomb has an iCCP chunk whose profile header declares declared bytes, of which the
// compressed stream holds only the 132-byte header.
func pngICCBomb(declared uint32) []byte {
	icc := make([]byte, 132)
	binary.BigEndian.PutUint32(icc, declared)
	copy(icc[36:], "acsp")
	out := pngIHDR(8, 8)
	out = append(out, pngChunk("iCCP", append([]byte("icc\x00\x00"), deflate(icc)...))...)
	out = append(out, pngIDAT(8, 8, 7)...)
	return append(out, pngChunk("IEND", nil)...)
}

// jpegHugeSegment inserts, after SOI, a marker segment (APP1 EXIF, APP2 ICC, COM, ...) that
// declares the largest length a JPEG segment can have, 65535, and holds only a few bytes of it.
func jpegHugeSegment(jpg []byte, marker byte, prefix string) []byte {
	out := append([]byte{}, jpg[:2]...)
	out = append(out, 0xFF, marker, 0xFF, 0xFF)
	out = append(out, prefix...)
	return out
}

// webpHugeChunk is a VP8X WebP whose chunk of typ declares hugeLen bytes.
func webpHugeChunk(typ string) []byte {
	vp8x := make([]byte, 10)
	vp8x[0] = 0x20 // ICC flag
	var b bytes.Buffer
	b.WriteString("VP8X")
	binary.Write(&b, binary.LittleEndian, uint32(len(vp8x)))
	b.Write(vp8x)
	b.WriteString(typ)
	binary.Write(&b, binary.LittleEndian, uint32(hugeLen))
	b.WriteString("AAAAAAAAAAAAAAAA")
	var out bytes.Buffer
	out.WriteString("RIFF")
	binary.Write(&out, binary.LittleEndian, uint32(4+b.Len()))
	out.WriteString("WEBP")
	out.Write(b.Bytes())
	return out.Bytes()
}

// peakRSS runs f and returns how far the process's peak resident set grew above what it was
// before (Linux: VmHWM, reset through /proc/self/clear_refs); ok is false where that is missing.
func peakRSS(f func()) (grew int64, ok bool) {
	if os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) != nil {
		f()
		return 0, false
	}
	before, ok1 := procStatus("VmHWM")
	f()
	after, ok2 := procStatus("VmHWM")
	return after - before, ok1 && ok2
}

func procStatus(key string) (int64, bool) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10, err == nil
		}
	}
	return 0, false
}
