package source

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
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

// wdsWalked is what wdsWalk produced, in a form easy to compare.
type wdsWalked struct {
	groups []string // "key: suffix=data suffix=data" (+ " LOST" / " DUP")
	end    wdsEnd
	err    error
}

func wdsWalkBytes(t testing.TB, data []byte, maxMember int64) wdsWalked {
	t.Helper()
	var w wdsWalked
	w.end, w.err = wdsWalk(bytes.NewReader(data), maxMember, func(g *wdsGroup) bool {
		var b strings.Builder
		b.WriteString(g.key + ":")
		for _, m := range g.members {
			fmt.Fprintf(&b, " %s=%s", m.Name, m.Data)
		}
		if g.dup != "" {
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
	if got.end != wdsEndClean || got.err != nil || !wdsSame(got.groups, want) {
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
	corrupt[3*2*wdsBlock+10] ^= 0xff
	got := wdsWalkBytes(t, corrupt, 1<<20)
	want := []string{"a: jpg=A txt=a", "b: jpg=B LOST", "c: jpg=" + strings.Repeat("C", 1500) + " txt=c LOST", "d: jpg=D txt=d"}
	if got.end != wdsEndClean || !wdsSame(got.groups, want) {
		t.Fatalf("got %.200q (end %v %v), want %.200q", got.groups, got.end, got.err, want)
	}
	// Corrupt the first header of c: its data blocks are skipped, c.txt continues a lost group.
	corrupt = bytes.Clone(data)
	corrupt[4*2*wdsBlock+100] ^= 0x01
	got = wdsWalkBytes(t, corrupt, 1<<20)
	want = []string{"a: jpg=A txt=a", "b: jpg=B txt=b LOST", "c: txt=c LOST", "d: jpg=D txt=d"}
	if got.end != wdsEndClean || !wdsSame(got.groups, want) {
		t.Fatalf("got %q (end %v %v), want %q", got.groups, got.end, got.err, want)
	}
}

func TestWalkTruncatedLosesOnlyTheSampleBeingRead(t *testing.T) {
	data := wdsTar(t,
		wdsMember{name: "a.jpg", data: "A"}, wdsMember{name: "a.txt", data: "a"},
		wdsMember{name: "b.jpg", data: strings.Repeat("B", 2000)}, wdsMember{name: "b.txt", data: "b"},
	)
	// Cut inside b.jpg's header: whether a was complete is unknown, so a is lost.
	if got := wdsWalkBytes(t, data[:4*wdsBlock+100], 1<<20); got.end != wdsEndTruncated || !wdsSame(got.groups, []string{"a: jpg=A txt=a LOST"}) {
		t.Fatalf("cut in a header: got %q (end %v %v)", got.groups, got.end, got.err)
	}
	for _, cut := range []int{4*wdsBlock + 700, 6*wdsBlock + 300} {
		got := wdsWalkBytes(t, data[:cut], 1<<20)
		if got.end != wdsEndTruncated || !wdsSame(got.groups, []string{"a: jpg=A txt=a", "b: LOST"}) {
			t.Fatalf("cut at %d: got %q (end %v %v)", cut, got.groups, got.end, got.err)
		}
	}
	// Cut at a header boundary, the archive just looks shorter (as for every tar reader).
	if got := wdsWalkBytes(t, data[:4*wdsBlock], 1<<20); got.end != wdsEndClean || !wdsSame(got.groups, []string{"a: jpg=A txt=a"}) {
		t.Fatalf("cut at a boundary: got %q (end %v %v)", got.groups, got.end, got.err)
	}
}

func TestWalkMemberTooLargeLosesItsSample(t *testing.T) {
	data := wdsTar(t,
		wdsMember{name: "a.jpg", data: strings.Repeat("A", 100)}, wdsMember{name: "a.txt", data: "a"},
		wdsMember{name: "b.jpg", data: "B"},
	)
	got := wdsWalkBytes(t, data, 50)
	if want := []string{"a: txt=a LOST", "b: jpg=B"}; got.end != wdsEndClean || !wdsSame(got.groups, want) {
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
	end, err := wdsWalk(wdsStreamErrors{&wdsFailingReader{data: data[:3*wdsBlock], err: boom}}, 1<<20, func(g *wdsGroup) bool {
		groups = append(groups, fmt.Sprintf("%s lost=%v", g.key, g.lost != ""))
		return true
	})
	if end != wdsEndFailed || !errors.Is(err, boom) || !wdsSame(groups, []string{"a lost=false", "b lost=true"}) {
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

// FuzzTarGrouping feeds arbitrary bytes to the shard walker: it must never panic or loop, must report
// every group at most once with a key and consistent flags, and on archives that archive/tar reads
// cleanly must group exactly like the reference.
func FuzzTarGrouping(f *testing.F) {
	f.Add(wdsTar(f, wdsMember{name: "a.jpg", data: "A"}, wdsMember{name: "a.txt", data: "t"}, wdsMember{name: "b.JPG", data: "B"}))
	f.Add(wdsTar(f, wdsMember{name: "d/x.seg.png", data: "1"}, wdsMember{name: "d/.json", data: "{}"}, wdsMember{name: "__meta__", data: "m"}))
	long := wdsTar(f, wdsMember{name: strings.Repeat("long/", 30) + "k.cls", data: "7"}, wdsMember{name: "k.jpg", data: "x"})
	f.Add(long)
	broken := bytes.Clone(long)
	broken[20] ^= 0x55
	f.Add(broken)
	f.Add(long[:700])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var groups []string
		end, err := wdsWalk(bytes.NewReader(data), 1<<20, func(g *wdsGroup) bool {
			if g.key == "" && g.lost == "" && len(g.members) > 0 {
				// "dir/" keys are not empty; an empty key can only come from a name like ".x" at the root,
				// which SplitKey rejects.
				t.Fatalf("group without a key: %+v", g)
			}
			seen := map[string]bool{}
			for _, m := range g.members {
				if seen[m.Name] {
					t.Fatalf("member %q twice in group %q", m.Name, g.key)
				}
				seen[m.Name] = true
				if m.Name != strings.ToLower(m.Name) {
					t.Fatalf("suffix %q not lowercased", m.Name)
				}
			}
			s := g.key + ":"
			for _, m := range g.members {
				s += fmt.Sprintf(" %s=%s", m.Name, m.Data)
			}
			if g.dup != "" {
				s += " DUP"
			}
			if g.lost != "" {
				s += " LOST"
			}
			groups = append(groups, s)
			return true
		})
		if end == wdsEndFailed || end == wdsEndStopped {
			t.Fatalf("a byte slice cannot fail or stop: end %v, %v", end, err)
		}
		if want, ok := wdsReferenceGroups(data); ok {
			if end != wdsEndClean || !wdsSame(groups, want) {
				t.Fatalf("walker %q (end %v %v), reference %q", groups, end, err, want)
			}
		}
	})
}
