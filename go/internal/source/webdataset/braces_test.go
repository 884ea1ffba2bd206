package webdataset

import (
	"errors"
	"strings"
	"testing"
)

func TestExpandBraces(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"plain.tar", []string{"plain.tar"}},
		{"s-{000..003}.tar", []string{"s-000.tar", "s-001.tar", "s-002.tar", "s-003.tar"}},
		{"s-{8..11}.tar", []string{"s-8.tar", "s-9.tar", "s-10.tar", "s-11.tar"}},
		{"s-{08..11}", []string{"s-08", "s-09", "s-10", "s-11"}},
		{"s-{3..1}", []string{"s-3", "s-2", "s-1"}},
		{"s-{0..10..5}", []string{"s-0", "s-5", "s-10"}},
		{"{a,b}{1..2}", []string{"a1", "a2", "b1", "b2"}},
		{"x{a,b{1..2},}y", []string{"xay", "xb1y", "xb2y", "xy"}},
		{"http://h/{train,val}-{00..01}.tar", []string{"http://h/train-00.tar", "http://h/train-01.tar", "http://h/val-00.tar", "http://h/val-01.tar"}},
		{"{7..7}", []string{"7"}},
	} {
		got, err := expandBraces(tc.in)
		if err != nil || !wdsSame(got, tc.want) {
			t.Errorf("expandBraces(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestExpandBracesErrors(t *testing.T) {
	for _, tc := range []struct{ in, msg string }{
		{"s-{000..003.tar", "without a matching '}'"},
		{"s-000..003}.tar", "without a matching '{'"},
		{"s-{abc}.tar", "neither a list"},
		{"s-{}.tar", "neither a list"},
		{"s-{a..e}.tar", "only non-negative decimal numbers"},
		{"s-{1..5..0}", "positive"},
		{"s-{0..99999999}", "more than"},
		{"{0..999}{0..999}{0..9}", "more than"},
		{"{a,{b}", "neither a list"},
		{"{a,{b,c}", "without a matching '}'"},
	} {
		_, err := expandBraces(tc.in)
		var be *BraceError
		if !errors.As(err, &be) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("expandBraces(%q): error %v, want one containing %q", tc.in, err, tc.msg)
		}
	}
}

func TestShardLocation(t *testing.T) {
	for _, tc := range []struct {
		in, path string
		http, ok bool
	}{
		{"/data/a.tar", "/data/a.tar", false, true},
		{"rel/a.tar", "rel/a.tar", false, true},
		{"file:///data/a%20b.tar", "/data/a b.tar", false, true},
		{"https://host/b/a.tar", "", true, true},
		{"HTTP://host/a.tar", "", true, true},
		{"http:///a.tar", "", false, false},
		{"s3://bucket/a.tar", "", true, true},
		{"s3:///a.tar", "", false, false},
		{"S3://bucket/a.tar", "", false, false},
		{"gs://bucket/a.tar", "", true, true},
		{"ftp://host/a.tar", "", false, false},
		{"file://otherhost/a.tar", "", false, false},
	} {
		path, isHTTP, err := shardLocation(tc.in)
		if (err == nil) != tc.ok || (tc.ok && (path != tc.path || isHTTP != tc.http)) {
			t.Errorf("shardLocation(%q) = %q, %v, %v", tc.in, path, isHTTP, err)
		}
	}
}

// FuzzExpandBraces: any pattern either fails with a *BraceError or expands to at most maxShards
// names, and a pattern without braces expands to itself.
func FuzzExpandBraces(f *testing.F) {
	for _, s := range []string{"a-{000..010}.tar", "{a,b{1..3},}", "{1..9..4}{x,y}", "}{", "{{}}", "{0..99999999}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		got, err := expandBraces(pattern)
		if err != nil {
			var be *BraceError
			if !errors.As(err, &be) {
				t.Fatalf("%q: error of type %T", pattern, err)
			}
			return
		}
		if len(got) == 0 || len(got) > maxShards {
			t.Fatalf("%q: %d names", pattern, len(got))
		}
		if !strings.ContainsAny(pattern, "{}") && (len(got) != 1 || got[0] != pattern) {
			t.Fatalf("%q expanded to %q", pattern, got)
		}
	})
}
