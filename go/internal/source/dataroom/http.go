package dataroom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/source/httpretry"
)

// Error is a failed request: an HTTP status (with the server's message) or a transport error.
type Error struct {
	URL       string // redacted: a file URL loses its query (signed URLs carry credentials)
	Status    int    // 0 for a transport or body error
	Message   string // the server's message, or the transport error
	Transient bool   // retrying may help (and did not, if this error was returned)
	Attempts  int

	retryAfter time.Duration // the server's Retry-After, if any
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("dataroom: GET ")
	b.WriteString(e.URL)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d %s", e.Status, http.StatusText(e.Status))
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts)", e.Attempts)
	}
	return b.String()
}

// SkipReason is the reason a sample is counted under when a download fails with e.
func (e *Error) SkipReason() string {
	switch {
	case e.Status == http.StatusNotFound || e.Status == http.StatusGone:
		return source.ReasonNotFound
	case e.Status != 0:
		return source.ReasonHTTPError
	}
	return source.ReasonReadError
}

// serverMessage extracts a readable message from an error body: DRF's {"detail": ...}, a list of
// messages, a {field: [messages]} object, or the start of an HTML/text page.
func serverMessage(body []byte) string {
	var v any
	if json.Unmarshal(body, &v) == nil {
		var parts []string
		var walk func(prefix string, v any)
		walk = func(prefix string, v any) {
			switch t := v.(type) {
			case string:
				parts = append(parts, prefix+t)
			case []any:
				for _, x := range t {
					walk(prefix, x)
				}
			case map[string]any:
				if d, ok := t["detail"]; ok && len(t) == 1 {
					walk(prefix, d)
					return
				}
				keys := make([]string, 0, len(t))
				for k := range t {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				for _, k := range keys {
					walk(prefix+k+": ", t[k])
				}
			default:
				b, _ := json.Marshal(t)
				parts = append(parts, prefix+string(b))
			}
		}
		walk("", v)
		if msg := strings.Join(parts, "; "); msg != "" {
			return httpretry.Truncate(msg, 500)
		}
	}
	text := strings.Join(strings.Fields(stripTags(string(body))), " ")
	return httpretry.Truncate(text, 200)
}

func stripTags(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
		case r == '>':
			in = false
			b.WriteByte(' ')
		case !in:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// transportMessage is err without the URL net/http puts in it (shown apart, redacted).
func transportMessage(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout: " + err.Error()
	}
	return err.Error()
}

// get performs GET u with retries: transport errors, timeouts, broken bodies, 408, 429 and 5xx are
// retried up to MaxRetries times with backoff; any other non-2xx status fails at once. check, when
// set, validates a 2xx body; its error counts as a transient failure (a cut or garbled response).
// The API key is sent only when auth is set (page requests; files are signed URLs).
func (d *Source) get(ctx context.Context, u string, auth bool, shownURL string, check func([]byte) error) ([]byte, error) {
	var last *Error
	attempts := d.cfg.MaxRetries + 1
	for attempt := 1; attempt <= attempts; attempt++ {
		if attempt > 1 {
			wait := httpretry.Backoff(d.cfg.Backoff, attempt-1)
			if last != nil {
				wait = max(wait, last.retryAfter)
			}
			if err := httpretry.Sleep(ctx, wait); err != nil {
				return nil, err
			}
		}
		body, err := d.getOnce(ctx, u, auth, shownURL)
		if err == nil && check != nil {
			if cerr := check(body); cerr != nil {
				err = &Error{URL: shownURL, Message: cerr.Error(), Transient: true}
			}
		}
		if err == nil {
			return body, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var de *Error
		if !errors.As(err, &de) {
			return nil, err
		}
		de.Attempts = attempt
		last = de
		if !de.Transient {
			return nil, de
		}
	}
	return nil, last
}

func (d *Source) getOnce(ctx context.Context, u string, auth bool, shownURL string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &Error{URL: shownURL, Message: "invalid URL"}
	}
	if auth {
		req.Header.Set("Authorization", "Token "+d.cfg.APIKey)
		req.Header.Set("Accept", "application/json")
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, &Error{URL: shownURL, Message: httpretry.Redact(transportMessage(err), d.cfg.APIKey), Transient: true}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return nil, &Error{
			URL: shownURL, Status: resp.StatusCode, Message: httpretry.Redact(serverMessage(body), d.cfg.APIKey),
			Transient: httpretry.Transient(resp.StatusCode), retryAfter: httpretry.RetryAfter(resp.Header),
		}
	}
	body, err := httpretry.ReadBody(resp, d.maxBody)
	var tooLarge *source.TooLargeError
	if errors.As(err, &tooLarge) {
		tooLarge.What = "dataroom: GET " + shownURL
		return nil, tooLarge
	}
	if err != nil {
		return nil, &Error{URL: shownURL, Message: "reading the body: " + httpretry.Redact(transportMessage(err), d.cfg.APIKey), Transient: true}
	}
	return body, nil
}

// getPage requests and parses one page.
func (d *Source) getPage(ctx context.Context, u string) (*Page, error) {
	var page *Page
	_, err := d.get(ctx, u, true, u, func(body []byte) error {
		p, err := parsePage(body)
		page = p
		return err
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}
