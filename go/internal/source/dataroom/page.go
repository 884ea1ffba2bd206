package dataroom

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/datago-dev/datago/internal/source/httpretry"
)

// Page is one page of images/ or images/random/: {"next": URL|null, "results": [...]}.
type Page struct {
	Next    *string // nil: null or absent (the end in list mode; always nil for random pages)
	Results []Record
}

// Record is one result. A result that cannot be served has Err set (and ID when it has one):
// it is skipped and counted, the page goes on.
type Record struct {
	ID        string
	ImageURL  string
	Latents   []Latent
	Embedding []float32 // coca_embedding.vector, nil when absent or null
	Meta      map[string]any
	Err       error
	// Width and Height are the image's size as the listing gives it (0 when it does not): a planned
	// run's buckets, without a header pass.
	Width, Height int
}

type Latent struct {
	Type   string `json:"latent_type"`
	URL    string `json:"file_direct_url"`
	IsMask bool   `json:"is_mask"`
}

// Kinds of latent files, classified like the original datago.
const (
	latentBytes = iota
	latentMask
	latentImage
)

// kind: a type containing "image" but not "latent_" is an additional image; otherwise is_mask makes
// a mask; everything else is delivered as raw bytes.
func (l Latent) kind() int {
	switch {
	case strings.Contains(l.Type, "image") && !strings.Contains(l.Type, "latent_"):
		return latentImage
	case l.IsMask:
		return latentMask
	}
	return latentBytes
}

// parsePage reads a page body. An error means the page itself is unusable (not a JSON
// object, no results array, a next that is not a string); problems of single results are recorded
// in their Err.
func parsePage(body []byte) (*Page, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, fmt.Errorf("invalid JSON page: %v", err)
	}
	if top == nil {
		return nil, errors.New("invalid page: not a JSON object")
	}
	p := &Page{}
	if raw, ok := top["next"]; ok && !isNull(raw) {
		var next string
		if err := json.Unmarshal(raw, &next); err != nil {
			return nil, fmt.Errorf("invalid page: `next` is not a string or null: %s", snippet(raw))
		}
		p.Next = &next
	}
	raw, ok := top["results"]
	if !ok || isNull(raw) {
		return nil, errors.New("invalid page: no `results` array")
	}
	var results []json.RawMessage
	if err := json.Unmarshal(raw, &results); err != nil {
		return nil, fmt.Errorf("invalid page: `results` is not an array: %s", snippet(raw))
	}
	p.Results = make([]Record, len(results))
	for i, r := range results {
		p.Results[i] = parseRecord(r, i)
	}
	return p, nil
}

func parseRecord(raw json.RawMessage, index int) (rec Record) {
	fail := func(format string, args ...any) Record {
		if rec.ID == "" {
			rec.ID = fmt.Sprintf("<result %d of the page>", index)
		}
		rec.Err = fmt.Errorf("dataroom: result %s: %s", rec.ID, fmt.Sprintf(format, args...))
		return rec
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return fail("not a JSON object: %s", snippet(raw))
	}
	// id: a string (dataroom's) or a number.
	if v, ok := m["id"]; ok && !isNull(v) {
		var s string
		var n json.Number
		switch {
		case json.Unmarshal(v, &s) == nil:
			rec.ID = s
		case json.Unmarshal(v, &n) == nil:
			rec.ID = n.String()
		}
	}
	if rec.ID == "" {
		return fail("no `id`")
	}
	var src, imageURL string
	if err := optional(m, "source", &src); err != nil {
		return fail("%v", err)
	}
	if err := optional(m, "image_direct_url", &imageURL); err != nil {
		return fail("%v", err)
	}
	rec.ImageURL = imageURL
	attrs := json.RawMessage("{}")
	if v, ok := m["attributes"]; ok && !isNull(v) {
		if bytes.TrimSpace(v)[0] != '{' {
			return fail("`attributes` is not an object: %s", snippet(v))
		}
		attrs = v
	}
	tags := []string{}
	if err := optional(m, "tags", &tags); err != nil {
		return fail("%v", err)
	}
	if tags == nil {
		tags = []string{}
	}
	rec.Meta = map[string]any{"source": src, "attributes": attrs, "tags": tags}
	if v, ok := m["duplicate_state"]; ok {
		var n *json.Number
		if err := json.Unmarshal(v, &n); err != nil {
			return fail("`duplicate_state` is not a number or null: %s", snippet(v))
		}
		if n == nil {
			rec.Meta["duplicate_state"] = nil
		} else {
			rec.Meta["duplicate_state"] = *n
		}
	}
	var emb *struct {
		Vector []float32 `json:"vector"`
	}
	if err := optional(m, "coca_embedding", &emb); err != nil {
		return fail("%v", err)
	}
	if emb != nil && emb.Vector != nil {
		rec.Embedding = emb.Vector
		rec.Meta["embedding"] = emb.Vector
	}
	// Not delivered as metadata (the streaming path does not ask for them): a size of the wrong type is
	// no size, and the image's header decides.
	var w, h int
	if optional(m, "width", &w) == nil && optional(m, "height", &h) == nil && w > 0 && h > 0 {
		rec.Width, rec.Height = w, h
	}
	if err := optional(m, "latents", &rec.Latents); err != nil {
		return fail("%v", err)
	}
	for _, l := range rec.Latents {
		if l.Type == "" || l.URL == "" {
			return fail("a latent without `latent_type` or `file_direct_url`")
		}
	}
	return rec
}

// optional decodes m[key] into dst when it is present and not null.
func optional(m map[string]json.RawMessage, key string, dst any) error {
	v, ok := m[key]
	if !ok || isNull(v) {
		return nil
	}
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("`%s` has the wrong type: %s", key, snippet(v))
	}
	return nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// snippet is the start of a JSON value (or body), for error messages.
func snippet(b []byte) string { return httpretry.Truncate(string(bytes.TrimSpace(b)), 80) }
