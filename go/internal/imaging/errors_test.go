package imaging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/datago-dev/datago/internal/bucket"
	"github.com/datago-dev/datago/internal/testimg"
)

// badCRC flips the CRC of the first chunk of typ.
func badCRC(png []byte, typ string) []byte {
	out := append([]byte{}, png...)
	for pos := 8; pos+12 <= len(out); {
		n := int(binary.BigEndian.Uint32(out[pos:]))
		if string(out[pos+4:pos+8]) == typ {
			out[pos+8+n] ^= 0xFF
			return out
		}
		pos += n + 12
	}
	panic("no " + typ)
}

// jpegWithJunk inserts bytes before the SOF marker: libjpeg warns ("Corrupt JPEG data: 5
// extraneous bytes before marker 0xc0"), libvips decodes it all the same and leaves that
// warning in its error buffer.
func jpegWithJunk(jpg []byte) []byte {
	i := bytes.Index(jpg, []byte{0xFF, 0xC0})
	out := append([]byte{}, jpg[:i]...)
	out = append(out, 1, 2, 3, 4, 5)
	return append(out, jpg[i:]...)
}

// corruptWebP overwrites the VP8 bitstream after its frame header with noise, inside the
// chunk: the container is sound, the image data is not.
func corruptWebP(t testing.TB, webp []byte) []byte {
	pos := 12
	for string(webp[pos:pos+4]) != "VP8 " {
		pos += 8 + int(binary.LittleEndian.Uint32(webp[pos+4:]))
		if pos+8 > len(webp) {
			t.Fatal("no VP8 chunk")
		}
	}
	out := append([]byte{}, webp...)
	end := pos + 8 + int(binary.LittleEndian.Uint32(out[pos+4:]))
	for i := pos + 8 + 20; i < end; i++ {
		out[i] = byte(i*131 + 7)
	}
	return out
}

// Each failure's message names its own format and cause, never another file's, while failing
// and warning files of every format go through Process at once (the same C paths as the
// pipeline's decoders).
func TestErrorMessagesAreTheirOwn(t *testing.T) {
	const w, h = 96, 64
	photoAt := photo(w, h, 5)
	jpg := testimg.JPEG(t, nrgbaImage(w, h, photoAt), 90)
	pngData := testimg.PNG(t, nrgbaImage(w, h, photoAt))
	webp := mustVipsEncode(t, w, h, photoAt, ".webp")
	type file struct {
		name   string
		data   []byte
		format string         // the format the message must name ("" when it decodes)
		cause  *regexp.Regexp // and the cause it must give
	}
	classes := []file{
		{"good jpeg with a warning", jpegWithJunk(jpg), "", nil},
		{"good png", pngData, "", nil},
		{"good jpeg", jpg, "", nil},
		{"truncated jpeg", jpg[:len(jpg)*6/10], "jpeg", regexp.MustCompile(`(?i)premature end|truncated`)},
		{"jpeg header only", jpg[:400], "jpeg", regexp.MustCompile(`(?i)premature end|truncated`)},
		{"png bad IDAT crc", badCRC(pngData, "IDAT"), "png", regexp.MustCompile(`(?i)crc`)},
		{"png bad IHDR crc", badCRC(pngData, "IHDR"), "png", regexp.MustCompile(`(?i)crc`)},
		{"truncated png", pngData[:len(pngData)/2], "png", regexp.MustCompile(`(?i)truncated|premature|not enough`)},
		{"corrupt webp", corruptWebP(t, webp), "webp", regexp.MustCompile(`(?i)unable to|decode|bitstream|corrupt`)},
		{"truncated webp", webp[:len(webp)/2], "webp", regexp.MustCompile(`(?i)truncated`)},
		{"not an image", []byte("%PDF-1.4 and then nothing of interest"), "", regexp.MustCompile(`not a JPEG, PNG, WebP, GIF or BMP`)},
	}
	formats := []string{"jpeg", "png", "webp"}
	opts := []*Options{
		{MaxPixels: 1 << 22},
		{CropAndResize: true, Target: &bucket.Bucket{Width: 32, Height: 32}},
		{CropAndResize: true, Target: &bucket.Bucket{Width: 32, Height: 32}, Mask: true},
	}
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				f := classes[(g*7+i)%len(classes)]
				o := opts[(g+i)%len(opts)]
				im, err := Process(f.data, o)
				im.Free()
				var bad string
				switch {
				case f.cause == nil && err != nil:
					bad = fmt.Sprintf("%s: unexpected error %v", f.name, err)
				case f.cause == nil:
				case err == nil || !errors.Is(err, ErrDecode):
					bad = fmt.Sprintf("%s: got %v, want ErrDecode", f.name, err)
				case !f.cause.MatchString(err.Error()):
					bad = fmt.Sprintf("%s: %q does not give the cause %v", f.name, err, f.cause)
				case f.format != "":
					msg := strings.ToLower(err.Error())
					for _, other := range formats {
						if strings.Contains(msg, other) != (other == f.format) {
							bad = fmt.Sprintf("%s: %q should name %q and no other format", f.name, err, f.format)
						}
					}
					if strings.Contains(msg, "extraneous") {
						bad = fmt.Sprintf("%s: %q carries another file's warning", f.name, err)
					}
				}
				if bad != "" {
					mu.Lock()
					failures = append(failures, bad)
					mu.Unlock()
				}
			}
		}(g)
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	for _, f := range classes {
		if f.cause != nil {
			_, err := Process(f.data, nil)
			t.Logf("%-18s %v", f.name, err)
		}
	}
}
