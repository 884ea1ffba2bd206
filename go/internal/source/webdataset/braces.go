package webdataset

import (
	"fmt"
	"strconv"
	"strings"
)

// maxShards bounds the number of shard names one url pattern may expand to: a typo such as
// {0..999999999} must be a configuration error, not an out-of-memory crash.
const maxShards = 1_000_000

// BraceError is a malformed brace pattern; Pos is the byte offset of the problem in the pattern.
type BraceError struct {
	Pattern string
	Pos     int
	Msg     string
}

func (e *BraceError) Error() string {
	return fmt.Sprintf("malformed brace pattern %q at offset %d: %s", e.Pattern, e.Pos, e.Msg)
}

// bracePart is a literal, or (alts != nil) a brace group: one of its alternatives, each a sequence.
type bracePart struct {
	lit  string
	alts [][]bracePart
}

// expandBraces expands shell-style brace groups in pattern, in order, left to right:
// lists "{a,b,c}" (alternatives may be empty and may nest) and numeric ranges "{000..099}",
// "{9..0}", "{0..100..10}". A range is zero padded to the width of its wider end when either end
// has a leading zero. A pattern without braces expands to itself. Unbalanced braces, a group that is
// neither a list nor a range, and expansions larger than maxShards are errors.
func expandBraces(pattern string) ([]string, error) {
	parts, next, err := parseSeq(pattern, 0, false)
	if err != nil {
		return nil, err
	}
	if next != len(pattern) { // parseSeq outside a group only stops at the end or on an error
		return nil, &BraceError{pattern, next, "unexpected character"}
	}
	return expandSeq(pattern, parts, []string{""})
}

// parseSeq reads a sequence from s[i:]; inside a group it stops before a ',' or '}' of its level.
func parseSeq(s string, i int, inGroup bool) ([]bracePart, int, error) {
	var parts []bracePart
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			parts = append(parts, bracePart{lit: lit.String()})
			lit.Reset()
		}
	}
	for i < len(s) {
		switch c := s[i]; {
		case c == '{':
			flush()
			group, next, err := parseGroup(s, i)
			if err != nil {
				return nil, 0, err
			}
			parts = append(parts, group)
			i = next
		case c == '}' && !inGroup:
			return nil, 0, &BraceError{s, i, "'}' without a matching '{'"}
		case (c == ',' || c == '}') && inGroup:
			flush()
			return parts, i, nil
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush()
	return parts, i, nil
}

// parseGroup reads the group starting with the '{' at s[open]; it returns the index after its '}'.
func parseGroup(s string, open int) (bracePart, int, error) {
	var alts [][]bracePart
	i := open + 1
	for {
		seq, next, err := parseSeq(s, i, true)
		if err != nil {
			return bracePart{}, 0, err
		}
		if next >= len(s) {
			return bracePart{}, 0, &BraceError{s, open, "'{' without a matching '}'"}
		}
		alts = append(alts, seq)
		i = next + 1
		if s[next] == '}' {
			break
		}
	}
	if len(alts) > 1 {
		return bracePart{alts: alts}, i, nil
	}
	values, err := braceRange(s[open+1 : i-1])
	if err != nil {
		return bracePart{}, 0, &BraceError{s, open, err.Error()}
	}
	alts = alts[:0]
	for _, v := range values {
		alts = append(alts, []bracePart{{lit: v}})
	}
	return bracePart{alts: alts}, i, nil
}

// braceRange expands the body of a "{a..b}" or "{a..b..step}" group.
func braceRange(body string) ([]string, error) {
	fields := strings.Split(body, "..")
	if len(fields) < 2 || len(fields) > 3 {
		return nil, fmt.Errorf("{%s} is neither a list {a,b,...} nor a range {first..last}", body)
	}
	for _, f := range fields {
		if f == "" || strings.Trim(f, "0123456789") != "" {
			return nil, fmt.Errorf("range {%s}: only non-negative decimal numbers are supported", body)
		}
	}
	first, err1 := strconv.ParseInt(fields[0], 10, 64)
	last, err2 := strconv.ParseInt(fields[1], 10, 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("range {%s}: number too large", body)
	}
	step := int64(1)
	if len(fields) == 3 {
		s, err := strconv.ParseInt(fields[2], 10, 64)
		if err != nil || s == 0 {
			return nil, fmt.Errorf("range {%s}: the step must be a positive number", body)
		}
		step = s
	}
	span := last - first
	if span < 0 {
		span = -span
	}
	if span/step >= maxShards {
		return nil, fmt.Errorf("range {%s} has more than %d values", body, maxShards)
	}
	width := 0
	for _, f := range fields[:2] {
		if len(f) > 1 && f[0] == '0' {
			width = max(len(fields[0]), len(fields[1]))
		}
	}
	var out []string
	for v := first; ; {
		out = append(out, fmt.Sprintf("%0*d", width, v))
		if first <= last {
			if last-v < step {
				break
			}
			v += step
		} else {
			if v-last < step {
				break
			}
			v -= step
		}
	}
	return out, nil
}

// expandSeq returns the expansions of parts in shell order: the leftmost group varies slowest.
func expandSeq(pattern string, parts []bracePart, prefixes []string) ([]string, error) {
	for _, p := range parts {
		options := []string{p.lit}
		if p.alts != nil {
			options = options[:0]
			for _, alt := range p.alts {
				expanded, err := expandSeq(pattern, alt, []string{""})
				if err != nil {
					return nil, err
				}
				options = append(options, expanded...)
				if len(options) > maxShards {
					return nil, tooMany(pattern)
				}
			}
		}
		if len(prefixes)*len(options) > maxShards {
			return nil, tooMany(pattern)
		}
		next := make([]string, 0, len(prefixes)*len(options))
		for _, prefix := range prefixes {
			for _, o := range options {
				next = append(next, prefix+o)
			}
		}
		prefixes = next
	}
	return prefixes, nil
}

func tooMany(pattern string) error {
	return &BraceError{pattern, 0, fmt.Sprintf("expands to more than %d names", maxShards)}
}
