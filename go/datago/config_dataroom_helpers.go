package datago

import (
	"fmt"
	"strings"
)

// dbStringList reads a list of strings given either as a JSON array of strings or as one
// comma-separated string (the original datago's form, e.g. "tags": "photo,art"). Blank entries are
// dropped, and so are repeats. An entry cannot contain a comma: lists are sent comma-separated.
func (r *reader) dbStringList(o *object, k string, dst *[]string) {
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
				r.fail(fmt.Sprintf("%s[%d]", o.key(k), i), "must be a string, got "+jsonType(x))
				return
			}
			if strings.Contains(s, ",") {
				r.fail(fmt.Sprintf("%s[%d]", o.key(k), i), fmt.Sprintf("must not contain a comma, got %q", s))
				return
			}
			items = append(items, s)
		}
	default:
		r.fail(o.key(k), "must be a list of strings or a comma-separated string, got "+jsonType(v))
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
