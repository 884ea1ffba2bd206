// Package confread reads a decoded JSON configuration key by key. Every mistake is an *Error that
// names the full key path ("source_config.url[2]"), only the first mistake is kept (later reads are
// no-ops), and an unknown key is reported with the closest valid name. Every part of the loader's
// configuration (the top level, image_config, each source's source_config) is read with it.
package confread

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
)

// Error is a configuration mistake; Key is the path of the offending key, e.g. "source_config.rank".
type Error struct {
	Key string
	Msg string
}

func (e *Error) Error() string { return e.Key + ": " + e.Msg }

// Decode parses data as one JSON value with numbers kept as json.Number; a mistake is reported
// under key.
func Decode(data []byte, key string) (any, *Error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &Error{Key: key, Msg: "invalid JSON: " + err.Error()}
	}
	if dec.More() {
		return nil, &Error{Key: key, Msg: "invalid JSON: trailing data after the top-level object"}
	}
	return v, nil
}

// Object is a JSON object being read; it records the keys consumed so that Finish can report the
// unknown ones.
type Object struct {
	path string
	m    map[string]any
	used []string
}

// NewObject returns m for reading; path is its key path ("" for the top level).
func NewObject(path string, m map[string]any) *Object { return &Object{path: path, m: m} }

// Path is the object's key path.
func (o *Object) Path() string { return o.path }

// Map is the object's decoded content.
func (o *Object) Map() map[string]any { return o.m }

// Key is the path of key k of o.
func (o *Object) Key(k string) string {
	if o.path == "" {
		return k
	}
	return o.path + "." + k
}

func (o *Object) get(k string) (any, bool) {
	o.used = append(o.used, k)
	v, ok := o.m[k]
	return v, ok && v != nil
}

// Reader keeps the first error; later reads are no-ops so the first mistake is the one reported.
type Reader struct{ err *Error }

// Err is the first mistake, nil if there was none.
func (r *Reader) Err() *Error { return r.err }

// Failed reports whether a mistake was found.
func (r *Reader) Failed() bool { return r.err != nil }

// Fail records a mistake under key, unless one was already found.
func (r *Reader) Fail(key, msg string) {
	if r.err == nil {
		r.err = &Error{Key: key, Msg: msg}
	}
}

// FailWith records err (nil: nothing), unless a mistake was already found.
func (r *Reader) FailWith(err *Error) {
	if r.err == nil && err != nil {
		r.err = err
	}
}

// value returns the value of key k of o; false when it is absent (a failure if it is required) or
// when an earlier key already failed, so that the first mistake is the one reported.
func (r *Reader) value(o *Object, k string, required bool) (any, bool) {
	v, ok := o.get(k)
	if r.err != nil {
		return nil, false
	}
	if !ok && required {
		r.Fail(o.Key(k), "is required")
	}
	return v, ok
}

// Alias refuses a config that sets both alias and key (two spellings of one setting); the caller
// then reads both, the one present giving the value.
func (r *Reader) Alias(o *Object, alias, key string) {
	_, a := o.m[alias]
	_, k := o.m[key]
	if a && k {
		r.Fail(o.Key(alias), fmt.Sprintf("is another name for %s: set one of them", o.Key(key)))
	}
}

// Value returns the decoded value of an optional key k of o (false when absent or null, or when
// an earlier key failed), for values of more than one JSON type that the caller checks itself.
func (r *Reader) Value(o *Object, k string) (any, bool) { return r.value(o, k, false) }

// Str reads a string; a required one must not be empty.
func (r *Reader) Str(o *Object, k string, dst *string, required bool) {
	v, ok := r.value(o, k, required)
	if !ok {
		return
	}
	s, isStr := v.(string)
	if !isStr {
		r.Fail(o.Key(k), "must be a string, got "+JSONType(v))
		return
	}
	if required && s == "" {
		r.Fail(o.Key(k), "must not be empty")
		return
	}
	*dst = s
}

// Boolean reads a boolean.
func (r *Reader) Boolean(o *Object, k string, dst *bool) {
	v, ok := r.value(o, k, false)
	if !ok {
		return
	}
	b, isBool := v.(bool)
	if !isBool {
		r.Fail(o.Key(k), "must be a boolean, got "+JSONType(v))
		return
	}
	*dst = b
}

// Integer reads an integer >= min.
func (r *Reader) Integer(o *Object, k string, dst *int, min int) {
	r.IntegerIn(o, k, dst, min, math.MaxInt)
}

// IntegerIn reads an integer in [min, max].
func (r *Reader) IntegerIn(o *Object, k string, dst *int, min, max int) {
	v, ok := r.value(o, k, false)
	if !ok {
		return
	}
	n, isNum := v.(json.Number)
	if !isNum {
		r.Fail(o.Key(k), "must be an integer, got "+JSONType(v))
		return
	}
	i, err := n.Int64()
	if err != nil {
		r.Fail(o.Key(k), "must be an integer, got "+n.String())
		return
	}
	if i < int64(min) {
		r.Fail(o.Key(k), fmt.Sprintf("must be >= %d, got %d", min, i))
		return
	}
	if i > int64(max) {
		r.Fail(o.Key(k), fmt.Sprintf("must be <= %d, got %d", max, i))
		return
	}
	*dst = int(i)
}

// Float reads a finite number.
func (r *Reader) Float(o *Object, k string, dst *float64) {
	v, ok := r.value(o, k, false)
	if !ok {
		return
	}
	n, isNum := v.(json.Number)
	if !isNum {
		r.Fail(o.Key(k), "must be a number, got "+JSONType(v))
		return
	}
	f, err := n.Float64()
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		r.Fail(o.Key(k), "must be a finite number, got "+n.String())
		return
	}
	*dst = f
}

// Obj reads a nested object (nil when it is absent or wrong).
func (r *Reader) Obj(o *Object, k string, required bool) *Object {
	v, ok := r.value(o, k, required)
	if !ok {
		return nil
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		r.Fail(o.Key(k), "must be an object, got "+JSONType(v))
		return nil
	}
	return &Object{path: o.Key(k), m: m}
}

// Finish reports the first unknown key of o, with the closest valid name.
func (r *Reader) Finish(o *Object) {
	if r.err != nil {
		return
	}
	var unknown []string
	for k := range o.m {
		if !contains(o.used, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return
	}
	sort.Strings(unknown)
	msg := "unknown key"
	if best := Closest(unknown[0], o.used); best != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", best)
	} else {
		valid := append([]string(nil), o.used...)
		sort.Strings(valid)
		msg += fmt.Sprintf(" (valid keys: %s)", strings.Join(valid, ", "))
	}
	name := unknown[0]
	if name == "" {
		name = `""` // the empty key, which would otherwise leave the path blank
	}
	r.Fail(o.Key(name), msg)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Closest returns the candidate with the smallest edit distance to s, if it is plausibly a typo.
func Closest(s string, candidates []string) string {
	best, bestDist := "", len(s)/2+2
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// JSONType names the JSON type of a decoded value, for messages ("a string", "an object", ...).
func JSONType(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	}
	return "null"
}

// RankAndWorld reads source_config.rank and source_config.world_size, shared by every source.
func (r *Reader) RankAndWorld(sc *Object, rank, world *int) {
	r.Integer(sc, "rank", rank, 0)
	r.Integer(sc, "world_size", world, 1)
	if r.err == nil && *rank >= *world {
		r.Fail(sc.Key("rank"), fmt.Sprintf("must be < world_size (%d), got %d", *world, *rank))
	}
}

// ReadSection reads text, a JSON object, as the section at key with read (a section's parser, as
// the configuration calls it): for tests of one section's keys. The error is the first key's.
func ReadSection[T, R any](text []byte, key string, read func(*Reader, *Object) R) (T, error) {
	var zero T
	v, derr := Decode(text, key)
	if derr != nil {
		return zero, derr
	}
	m, ok := v.(map[string]any)
	if !ok {
		return zero, &Error{Key: key, Msg: "must be an object"}
	}
	r := &Reader{}
	o := NewObject(key, m)
	c := read(r, o)
	r.Finish(o)
	if err := r.Err(); err != nil {
		return zero, err
	}
	return any(c).(T), nil
}
