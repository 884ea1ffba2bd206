package confread

import (
	"strings"
	"testing"
)

func read(t testing.TB, data string) *Error {
	v, err := Decode([]byte(data), "config")
	if err != nil {
		return err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return &Error{Key: "config", Msg: "must be a JSON object"}
	}
	r := &Reader{}
	top := NewObject("", m)
	var s string
	var n int
	var f float64
	var b bool
	var list []string
	r.Str(top, "name", &s, false)
	r.IntegerIn(top, "n", &n, 0, 10)
	r.Float(top, "f", &f)
	r.Boolean(top, "b", &b)
	if sub := r.Obj(top, "sub", false); sub != nil {
		r.StrOrList(sub, "url", &list, true)
		r.CommaList(sub, "tags", &list)
		r.Finish(sub)
	}
	r.Finish(top)
	return r.Err()
}

func TestReaderNamesTheKeyOfTheFirstMistake(t *testing.T) {
	for data, want := range map[string]string{
		`{"name": "x", "n": 3}`:                  "",
		`{"n": 11}`:                              "n: must be <= 10, got 11",
		`{"n": 1.5, "f": "x"}`:                   "n: must be an integer, got 1.5",
		`{"f": 1e400}`:                           "f: must be a finite number, got 1e400",
		`{"b": 1}`:                               "b: must be a boolean, got a number",
		`{"nam": "x"}`:                           `nam: unknown key (did you mean "name"?)`,
		`{"zzzzzzzz": 1}`:                        "zzzzzzzz: unknown key (valid keys: b, f, n, name, sub)",
		`{"": 1}`:                                `"": unknown key`,
		`{"sub": {}}`:                            "sub.url: is required",
		`{"sub": {"url": ["a", 2]}}`:             "sub.url[1]: must be a string, got a number",
		`{"sub": {"url": "a", "tags": ["x,y"]}}`: `sub.tags[0]: must not contain a comma, got "x,y"`,
		`{"sub": {"url": "a", "tags": "x,,y", "t": 1}}`: "sub.t: unknown key (valid keys: tags, url)",
		`{} {}`: "config: invalid JSON: trailing data after the top-level object",
	} {
		got := ""
		if err := read(t, data); err != nil {
			got = err.Error()
		}
		if want == "" && got != "" || !strings.HasPrefix(got, want) {
			t.Errorf("%s: got %q, want %q", data, got, want)
		}
	}
}

// FuzzReader: any input is read without a panic, and a mistake always names a key.
func FuzzReader(f *testing.F) {
	for _, seed := range []string{`{"name": "x"}`, `{"sub": {"url": ["a"], "tags": "a,b"}}`, `{"n": -1}`, `[]`, `{`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := read(t, string(data)); err != nil && (err.Key == "" || !strings.HasPrefix(err.Error(), err.Key+": ")) {
			t.Fatalf("error without a key path: %v", err)
		}
	})
}
