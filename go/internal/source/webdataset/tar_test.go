package webdataset

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// wdsMember is a member of a test archive; typ 0 means a regular file.
type wdsMember struct {
	name string
	data string
	typ  byte
}

func wdsTar(t testing.TB, members ...wdsMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range members {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{Name: m.name, Typeflag: typ, Mode: 0o644, Format: tar.FormatGNU}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(m.data))
		}
		if typ == tar.TypeSymlink {
			hdr.Linkname = m.data
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(m.data)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// wdsWalked is what walk produced, in a form easy to compare.
type wdsWalked struct {
	groups []string // "key: suffix=data suffix=data" (+ " LOST" / " DUP")
	end    streamEnd
	err    error
}

func wdsWalkBytes(t testing.TB, data []byte, maxMember int64) wdsWalked {
	t.Helper()
	var w wdsWalked
	w.end, w.err = walk(bytes.NewReader(data), maxMember, func(g *Group) bool {
		var b strings.Builder
		b.WriteString(g.key + ":")
		for _, m := range g.members {
			fmt.Fprintf(&b, " %s=%s", m.Name, m.Data)
		}
		if g.dup {
			b.WriteString(" DUP")
		}
		if g.lost != "" {
			b.WriteString(" LOST")
		}
		w.groups = append(w.groups, b.String())
		return true
	})
	return w
}

func wdsSame(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestWalkGroupsConsecutiveMembersByKey(t *testing.T) {
	data := wdsTar(t,
		wdsMember{name: "dir", typ: tar.TypeDir},
		wdsMember{name: "dir/a.jpg", data: "A"},
		wdsMember{name: "dir/a.TXT", data: "cap a"},
		wdsMember{name: "dir/a.seg.png", data: "S"},
		wdsMember{name: "dir/b.jpg", data: "B"},
		wdsMember{name: "dir/b.cls", data: "3"},
		wdsMember{name: "__index__", data: "meta"},
		wdsMember{name: "__meta__/c.jpg", data: "meta"},
		wdsMember{name: "noext", data: "ignored"},
		wdsMember{name: "link.jpg", data: "dir/a.jpg", typ: tar.TypeSymlink},
		wdsMember{name: "c.d/e.jpg", data: "E"},
		wdsMember{name: "c.d/e.json", data: "{}"},
		wdsMember{name: "x/.txt", data: "dot"},
		wdsMember{name: "a.jpg", data: "again"},
		wdsMember{name: "a.jpg", data: "twice"},
	)
	got := wdsWalkBytes(t, data, 1<<20)
	want := []string{
		"dir/a: jpg=A txt=cap a seg.png=S",
		"dir/b: jpg=B cls=3",
		"c.d/e: jpg=E json={}",
		"x/: txt=dot",
		"a: jpg=again DUP",
	}
	if got.end != endClean || got.err != nil || !wdsSame(got.groups, want) {
		t.Fatalf("got %q (end %v, %v), want %q", got.groups, got.end, got.err, want)
	}
}

func TestSplitKeyMatchesWebDatasetRegexp(t *testing.T) {
	for _, name := range []string{
		"a.jpg", "a.b.c", "dir/a.jpg", "dir/sub/a.seg.png", ".jpg", "dir/.jpg", "d.x/.jpg", "a/b.c/.d",
		"a.b/c/.d", "a//.x", "/.x", "noext", "dir/noext", "x.y/z", "a.", "dir/a.", "./a.jpg", "a..b", "..",
		"dir/..", "é.jpg", "a.b/c.d", "x/y.z/w.v",
	} {
		wdsCheckSplitKey(t, name)
	}
}

// The WebDataset grouping rule, as the regular expression its Python package uses (Go's regexp has
// the same leftmost-first semantics as Python's re for submatches).
var wdsKeyRE = regexp.MustCompile(`^((?:.*/|)[^.]+)[.]([^/]*)$`)

func wdsCheckSplitKey(t *testing.T, name string) {
	key, suffix, ok := SplitKey(name)
	m := wdsKeyRE.FindStringSubmatch(name)
	if ok != (m != nil) || (ok && (key != m[1] || suffix != m[2])) {
		t.Fatalf("SplitKey(%q) = %q, %q, %v; the regexp gives %q", name, key, suffix, ok, m)
	}
}

func FuzzSplitKey(f *testing.F) {
	for _, s := range []string{"a.jpg", "d/.x", "a.b/c/.d", "x.y/z", "//..", "a/b/c.d.e"} {
		f.Add(s)
	}
	f.Fuzz(wdsCheckSplitKey)
}

func TestWalkResynchronisesAfterACorruptHeader(t *testing.T) {
	members := []wdsMember{
		{name: "a.jpg", data: "A"}, {name: "a.txt", data: "a"},
		{name: "b.jpg", data: "B"}, {name: "b.txt", data: "b"},
		{name: "c.jpg", data: strings.Repeat("C", 1500)}, {name: "c.txt", data: "c"},
		{name: "d.jpg", data: "D"}, {name: "d.txt", data: "d"},
	}
	data := wdsTar(t, members...)
	// Corrupt the header of b.txt (the 4th member: a.jpg, a.txt and b.jpg take 2 blocks each).
	corrupt := bytes.Clone(data)
	corrupt[3*2*blockSize+10] ^= 0xff
	got := wdsWalkBytes(t, corrupt, 1<<20)
	want := []string{"a: jpg=A txt=a", "b: jpg=B LOST", "c: jpg=" + strings.Repeat("C", 1500) + " txt=c LOST", "d: jpg=D txt=d"}
	if got.end != endClean || !wdsSame(got.groups, want) {
		t.Fatalf("got %.200q (end %v %v), want %.200q", got.groups, got.end, got.err, want)
	}
	// Corrupt the first header of c: its data blocks are skipped, c.txt continues a lost group.
	corrupt = bytes.Clone(data)
	corrupt[4*2*blockSize+100] ^= 0x01
	got = wdsWalkBytes(t, corrupt, 1<<20)
	want = []string{"a: jpg=A txt=a", "b: jpg=B txt=b LOST", "c: txt=c LOST", "d: jpg=D txt=d"}
	if got.end != endClean || !wdsSame(got.groups, want) {
		t.Fatalf("got %q (end %v %v), want %q", got.groups, got.end, got.err, want)
	}
}

func TestWalkTruncatedLosesOnlyTheSampleBeingRead(t *testing.T) {
	data := wdsTar(t,
		wdsMember{name: "a.jpg", data: "A"}, wdsMember{name: "a.txt", data: "a"},
		wdsMember{name: "b.jpg", data: strings.Repeat("B", 2000)}, wdsMember{name: "b.txt", data: "b"},
	)
	// Cut inside b.jpg's header: whether a was complete is unknown, so a is lost.
	if got := wdsWalkBytes(t, data[:4*blockSize+100], 1<<20); got.end != endTruncated || !wdsSame(got.groups, []string{"a: jpg=A txt=a LOST"}) {
		t.Fatalf("cut in a header: got %q (end %v %v)", got.groups, got.end, got.err)
	}
	for _, cut := range []int{4*blockSize + 700, 6*blockSize + 300} {
		got := wdsWalkBytes(t, data[:cut], 1<<20)
		if got.end != endTruncated || !wdsSame(got.groups, []string{"a: jpg=A txt=a", "b: LOST"}) {
			t.Fatalf("cut at %d: got %q (end %v %v)", cut, got.groups, got.end, got.err)
		}
	}
	// Cut at a header boundary, the archive just looks shorter (as for every tar reader).
	if got := wdsWalkBytes(t, data[:4*blockSize], 1<<20); got.end != endClean || !wdsSame(got.groups, []string{"a: jpg=A txt=a"}) {
		t.Fatalf("cut at a boundary: got %q (end %v %v)", got.groups, got.end, got.err)
	}
}

func TestWalkMemberTooLargeLosesItsSample(t *testing.T) {
	data := wdsTar(t,
		wdsMember{name: "a.jpg", data: strings.Repeat("A", 100)}, wdsMember{name: "a.txt", data: "a"},
		wdsMember{name: "b.jpg", data: "B"},
	)
	got := wdsWalkBytes(t, data, 50)
	if want := []string{"a: txt=a LOST", "b: jpg=B"}; got.end != endClean || !wdsSame(got.groups, want) {
		t.Fatalf("got %q, want %q", got.groups, want)
	}
}

// wdsFailingReader returns data, then a stream error.
type wdsFailingReader struct {
	data []byte
	err  error
}

func (f *wdsFailingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func TestWalkStreamErrorEndsTheShard(t *testing.T) {
	data := wdsTar(t, wdsMember{name: "a.jpg", data: "A"}, wdsMember{name: "b.jpg", data: strings.Repeat("B", 1000)})
	boom := errors.New("connection lost for good")
	var groups []string
	end, err := walk(streamErrors{&wdsFailingReader{data: data[:3*blockSize], err: boom}}, 1<<20, func(g *Group) bool {
		groups = append(groups, fmt.Sprintf("%s lost=%v", g.key, g.lost != ""))
		return true
	})
	if end != endFailed || !errors.Is(err, boom) || !wdsSame(groups, []string{"a lost=false", "b lost=true"}) {
		t.Fatalf("end %v err %v groups %q", end, err, groups)
	}
}

// The names WebDataset skips as archive metadata (besides top-level "__...__" names).
var wdsMetaRE = regexp.MustCompile(`^__[^/]*__($|/)`)

// wdsReferenceGroups groups a tar archive that archive/tar reads without error, with the WebDataset rules
// written as plainly as possible (the regexp, a map of suffixes): the oracle of FuzzTarGrouping.
func wdsReferenceGroups(data []byte) ([]string, bool) {
	tr := tar.NewReader(bytes.NewReader(data))
	var out []string
	var key string
	var cur []string
	var seen map[string]bool
	dup, open := false, false
	flush := func() {
		if open {
			s := key + ":" + strings.Join(cur, "")
			if dup {
				s += " DUP"
			}
			out = append(out, s)
		}
	}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			flush()
			return out, true
		}
		if err != nil {
			return nil, false
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeCont && hdr.Typeflag != tar.TypeGNUSparse {
			continue
		}
		if (!strings.Contains(hdr.Name, "/") && strings.HasPrefix(hdr.Name, "__") && strings.HasSuffix(hdr.Name, "__")) ||
			wdsMetaRE.MatchString(hdr.Name) {
			continue
		}
		m := wdsKeyRE.FindStringSubmatch(hdr.Name)
		if m == nil {
			continue
		}
		if hdr.Size > 1<<20 {
			return nil, false // the walker would lose it; not what this oracle checks
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			return nil, false
		}
		if !open || m[1] != key {
			flush()
			key, cur, seen, dup, open = m[1], nil, map[string]bool{}, false, true
		}
		suffix := strings.ToLower(m[2])
		if seen[suffix] {
			dup = true
			continue
		}
		seen[suffix] = true
		cur = append(cur, fmt.Sprintf(" %s=%s", suffix, body))
	}
}

// wdsGroupString renders a group like wdsWalkBytes does.
func wdsGroupString(t *testing.T, g *Group) string {
	seen := map[string]bool{}
	s := g.key + ":"
	for _, m := range g.members {
		if seen[m.Name] {
			t.Fatalf("member %q twice in group %q", m.Name, g.key)
		}
		seen[m.Name] = true
		if m.Name != strings.ToLower(m.Name) {
			t.Fatalf("suffix %q not lowercased", m.Name)
		}
		s += fmt.Sprintf(" %s=%s", m.Name, m.Data)
	}
	if g.dup {
		s += " DUP"
	}
	if g.lost != "" {
		s += " LOST"
	}
	return s
}

func wdsWalkFuzz(t *testing.T, data []byte) ([]string, streamEnd) {
	var groups []string
	end, err := walk(bytes.NewReader(data), 1<<20, func(g *Group) bool {
		groups = append(groups, wdsGroupString(t, g))
		return true
	})
	if end == endFailed || end == endStopped {
		t.Fatalf("a byte slice cannot fail or stop: end %v, %v", end, err)
	}
	return groups, end
}

// FuzzTarGrouping builds an archive from fuzzed member names (one per line; a name ending in "/" is a
// directory; every fifth member spans several blocks), then optionally flips bits of one byte and
// cuts it. Intact, the walker must group exactly like the reference; cut, it must give a prefix of
// the reference's groups (the last one lost, or complete up to the cut); corrupted, it must not panic
// or hang and keep its invariants.
func FuzzTarGrouping(f *testing.F) {
	f.Add("a.jpg\na.txt\nb.JPG\nb.cls\nb.jpg", uint16(0), uint16(0), uint8(0))
	f.Add("d/\nd/x.seg.png\nd/.json\n__meta__\n__x__/y.jpg\nnoext\nc.d/e.f.g", uint16(0), uint16(700), uint8(0x10))
	f.Add(strings.Repeat("long/", 30)+"k.cls\nk.jpg\nk.txt", uint16(1500), uint16(0), uint8(0))
	f.Add("a.jpg\na.txt\nb.jpg\nb.txt\nc.jpg", uint16(0), uint16(2100), uint8(1))
	f.Add("é/ü.jpg\n./a.jpg\n..\na..b", uint16(3000), uint16(0), uint8(0))
	f.Fuzz(func(t *testing.T, names string, cut, flip uint16, bits uint8) {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for i, name := range strings.SplitN(names, "\n", 64) {
			hdr := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg}
			data := []byte(strconv.Itoa(i))
			if i%5 == 4 {
				data = bytes.Repeat(data, 700)
			}
			if strings.HasSuffix(name, "/") {
				hdr.Typeflag, data = tar.TypeDir, nil
			}
			hdr.Size = int64(len(data))
			if tw.WriteHeader(hdr) != nil {
				return // a name tar cannot store: the writer is unusable now
			}
			if _, err := tw.Write(data); err != nil {
				t.Fatal(err)
			}
		}
		if tw.Close() != nil {
			return
		}
		data := buf.Bytes()
		want, ok := wdsReferenceGroups(data)
		if !ok {
			t.Fatalf("the reference cannot read what archive/tar wrote")
		}
		switch {
		case bits != 0 && len(data) > 0:
			data[int(flip)%len(data)] ^= bits
			wdsWalkFuzz(t, data) // invariants only: tar does not protect data or PAX records
		case cut != 0:
			data = data[:int(cut)%(len(data)+1)]
			got, _ := wdsWalkFuzz(t, data)
			if len(got) > len(want) {
				t.Fatalf("cut at %d: %q is longer than the intact %q", len(data), got, want)
			}
			for i, g := range got {
				lost := strings.HasSuffix(g, " LOST")
				key := strings.SplitN(want[i], ":", 2)[0] + ":"
				switch {
				case !strings.HasPrefix(g, key):
					t.Fatalf("cut at %d: group %d is %q, the intact archive has %q", len(data), i, g, want[i])
				case !lost && i < len(got)-1 && g != want[i]:
					t.Fatalf("cut at %d: group %d is %q, the intact archive has %q", len(data), i, g, want[i])
				case !lost && !strings.HasPrefix(want[i], strings.TrimSuffix(g, " DUP")):
					t.Fatalf("cut at %d: last group %q is not a prefix of %q", len(data), g, want[i])
				}
			}
		default:
			got, end := wdsWalkFuzz(t, data)
			if end != endClean || !wdsSame(got, want) {
				t.Fatalf("walker %q (end %v), reference %q", got, end, want)
			}
		}
	})
}

// FuzzTarBytes feeds arbitrary bytes to the shard walker: it must never panic or hang, must keep its
// invariants, and on archives that archive/tar reads cleanly must group exactly like the reference.
func FuzzTarBytes(f *testing.F) {
	f.Add(wdsTar(f, wdsMember{name: "a.jpg", data: "A"}, wdsMember{name: "a.txt", data: "t"}, wdsMember{name: "b.JPG", data: "B"}))
	long := wdsTar(f, wdsMember{name: strings.Repeat("long/", 30) + "k.cls", data: "7"}, wdsMember{name: "k.jpg", data: "x"})
	f.Add(long)
	broken := bytes.Clone(long)
	broken[20] ^= 0x55
	f.Add(broken)
	f.Add(long[:700])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		got, end := wdsWalkFuzz(t, data)
		if want, ok := wdsReferenceGroups(data); ok {
			if end != endClean || !wdsSame(got, want) {
				t.Fatalf("walker %q (end %v), reference %q", got, end, want)
			}
		}
	})
}
