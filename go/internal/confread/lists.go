package confread

import (
	"fmt"
	"strings"
)

// StrList reads a non-empty list of non-empty strings. An element's mistake names it by index,
// e.g. "source_config.image_keys[2]".
func (r *Reader) StrList(o *Object, k string, dst *[]string, required bool) {
	r.strList(o, k, dst, required, false)
}

// StrOrList is StrList that also takes a single string as a list of one (source_config.url).
func (r *Reader) StrOrList(o *Object, k string, dst *[]string, required bool) {
	r.strList(o, k, dst, required, true)
}

func (r *Reader) strList(o *Object, k string, dst *[]string, required, bareString bool) {
	v, ok := r.value(o, k, required)
	if !ok {
		return
	}
	if s, isStr := v.(string); isStr && bareString {
		if s == "" {
			r.Fail(o.Key(k), "must not be empty")
			return
		}
		*dst = []string{s}
		return
	}
	list, isList := v.([]any)
	if !isList {
		what := "a list of strings"
		if bareString {
			what = "a string or a list of strings"
		}
		r.Fail(o.Key(k), "must be "+what+", got "+JSONType(v))
		return
	}
	if len(list) == 0 {
		r.Fail(o.Key(k), "must not be an empty list")
		return
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		s, isStr := e.(string)
		key := fmt.Sprintf("%s[%d]", o.Key(k), i)
		if !isStr {
			r.Fail(key, "must be a string, got "+JSONType(e))
			return
		}
		if s == "" {
			r.Fail(key, "must not be empty")
			return
		}
		out = append(out, s)
	}
	*dst = out
}

// CommaList reads a list of strings given either as a JSON array of strings or as one
// comma-separated string (the original datago's form, e.g. "tags": "photo,art"). Blank entries are
// dropped, and so are repeats. An entry cannot contain a comma: such lists are sent comma-separated.
func (r *Reader) CommaList(o *Object, k string, dst *[]string) {
	v, ok := r.value(o, k, false)
	if !ok {
		return
	}
	var items []string
	switch t := v.(type) {
	case string:
		items = strings.Split(t, ",")
	case []any:
		for i, x := range t {
			s, isStr := x.(string)
			if !isStr {
				r.Fail(fmt.Sprintf("%s[%d]", o.Key(k), i), "must be a string, got "+JSONType(x))
				return
			}
			if strings.Contains(s, ",") {
				r.Fail(fmt.Sprintf("%s[%d]", o.Key(k), i), fmt.Sprintf("must not contain a comma, got %q", s))
				return
			}
			items = append(items, s)
		}
	default:
		r.Fail(o.Key(k), "must be a list of strings or a comma-separated string, got "+JSONType(v))
		return
	}
	var out []string
	seen := map[string]bool{}
	for _, s := range items {
		s = strings.TrimSpace(s)
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	*dst = out
}
