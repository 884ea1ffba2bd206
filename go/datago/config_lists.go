package datago

import "fmt"

// strList reads a list of non-empty strings. With oneOrMore, a single string is accepted as a list of
// one (source_config.url). An element's mistake names it by index, e.g. "source_config.url[2]".
func (r *reader) strList(o *object, k string, dst *[]string, required, oneOrMore bool) {
	v, ok := r.value(o, k, required)
	if !ok {
		return
	}
	if s, isStr := v.(string); isStr && oneOrMore {
		if s == "" {
			r.fail(o.key(k), "must not be empty")
			return
		}
		*dst = []string{s}
		return
	}
	list, isList := v.([]any)
	if !isList {
		what := "a list of strings"
		if oneOrMore {
			what = "a string or a list of strings"
		}
		r.fail(o.key(k), "must be "+what+", got "+jsonType(v))
		return
	}
	if len(list) == 0 {
		r.fail(o.key(k), "must not be an empty list")
		return
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		s, isStr := e.(string)
		key := fmt.Sprintf("%s[%d]", o.key(k), i)
		if !isStr {
			r.fail(key, "must be a string, got "+jsonType(e))
			return
		}
		if s == "" {
			r.fail(key, "must not be empty")
			return
		}
		out = append(out, s)
	}
	*dst = out
}
