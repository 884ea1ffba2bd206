package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// newDataroomHTTPClient is the client shared by the page requests and every worker's downloads:
// keep-alive connections, enough idle ones per host for all the workers to reuse theirs.
func newDataroomHTTPClient(timeout time.Duration, conns int) *http.Client {
	dialer := &net.Dialer{Timeout: min(timeout, 30*time.Second), KeepAlive: 30 * time.Second}
	idle := max(conns, 1) + dataroomPrefetchPages + 2
	return &http.Client{
		Timeout: timeout, // the whole request, body included
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          max(100, 2*idle),
			MaxIdleConnsPerHost:   idle,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   min(timeout, 30*time.Second),
			ExpectContinueTimeout: time.Second,
		},
		// Never follow a redirect with the token to another origin (net/http already drops the
		// Authorization header there); cap the number of redirects.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("stopped after 5 redirects")
			}
			return nil
		},
	}
}

// DataroomError is a failed request: an HTTP status (with the server's message) or a transport error.
type DataroomError struct {
	URL       string // redacted: a file URL loses its query (signed URLs carry credentials)
	Status    int    // 0 for a transport or body error
	Message   string // the server's message, or the transport error
	Transient bool   // retrying may help (and did not, if this error was returned)
	Attempts  int

	retryAfter time.Duration // the server's Retry-After, if any
}

func (e *DataroomError) Error() string {
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
func (e *DataroomError) SkipReason() string {
	switch {
	case e.Status == http.StatusNotFound || e.Status == http.StatusGone:
		return "not_found"
	case e.Status != 0:
		return "http_error"
	}
	return ReasonReadError
}

// transientStatus: statuses a retry may fix.
func transientStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
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
			return clip(msg, 500)
		}
	}
	text := strings.Join(strings.Fields(stripTags(string(body))), " ")
	return clip(text, 200)
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

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// redactURL drops the query of a file URL: signed URLs carry credentials.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<invalid URL>"
	}
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	u.User = nil
	return u.String()
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

// backoff is the wait before retry number attempt (1, 2, ...): base·2^(attempt-1), capped, with
// "equal jitter" (between half and all of it), so that clients failing together do not retry together.
func backoff(base time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < dataroomMaxBackoff; i++ {
		d *= 2
	}
	d = min(d, dataroomMaxBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

// retryAfter reads a Retry-After header given in seconds (capped).
func retryAfter(h http.Header) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After")))
	if err != nil || s <= 0 {
		return 0
	}
	return min(time.Duration(s)*time.Second, dataroomMaxRetryAfter)
}

// get performs GET u with retries: transport errors, timeouts, broken bodies, 408, 429 and 5xx are
// retried up to MaxRetries times with backoff; any other non-2xx status fails at once. check, when
// set, validates a 2xx body; its error counts as a transient failure (a cut or garbled response).
// The API key is sent only when auth is set (page requests; files are signed URLs).
func (d *Dataroom) get(ctx context.Context, u string, auth bool, shownURL string, check func([]byte) error) ([]byte, error) {
	var last *DataroomError
	attempts := d.cfg.MaxRetries + 1
	for attempt := 1; attempt <= attempts; attempt++ {
		if attempt > 1 {
			wait := backoff(d.cfg.Backoff, attempt-1)
			if last != nil {
				wait = max(wait, last.retryAfter)
			}
			if err := sleepContext(ctx, wait); err != nil {
				return nil, err
			}
		}
		body, err := d.getOnce(ctx, u, auth, shownURL)
		if err == nil && check != nil {
			if cerr := check(body); cerr != nil {
				err = &DataroomError{URL: shownURL, Message: cerr.Error(), Transient: true}
			}
		}
		if err == nil {
			return body, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var de *DataroomError
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

func (d *Dataroom) getOnce(ctx context.Context, u string, auth bool, shownURL string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, &DataroomError{URL: shownURL, Message: "invalid URL"}
	}
	if auth {
		req.Header.Set("Authorization", "Token "+d.cfg.APIKey)
		req.Header.Set("Accept", "application/json")
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, &DataroomError{URL: shownURL, Message: d.redact(transportMessage(err)), Transient: true}
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, dataroomMaxErrorBody))
		return nil, &DataroomError{
			URL: shownURL, Status: resp.StatusCode, Message: d.redact(serverMessage(body)),
			Transient: transientStatus(resp.StatusCode), retryAfter: retryAfter(resp.Header),
		}
	}
	body, err := readBody(resp, d.cfg.MaxBodyBytes)
	var tooLarge *TooLargeError
	if errors.As(err, &tooLarge) {
		tooLarge.What = "dataroom: GET " + shownURL
		return nil, tooLarge
	}
	if err != nil {
		return nil, &DataroomError{URL: shownURL, Message: "reading the body: " + d.redact(transportMessage(err)), Transient: true}
	}
	return body, nil
}

// readBody reads a whole response body, in one allocation when its length is announced (io.ReadAll
// would grow and copy its buffer a dozen times for a few-megabyte image).
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	if limit > 0 && resp.ContentLength > limit {
		return nil, &TooLargeError{Size: resp.ContentLength, Limit: limit}
	}
	if n := resp.ContentLength; n > 0 && n < 1<<31 {
		body := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, body); err != nil {
			return nil, err
		}
		return body, nil
	}
	if limit <= 0 {
		return io.ReadAll(resp.Body)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err == nil && int64(len(body)) > limit {
		return nil, &TooLargeError{Size: -1, Limit: limit}
	}
	return body, err
}

// redact removes the API key from a message, should a server or proxy echo it.
func (d *Dataroom) redact(s string) string {
	if len(d.cfg.APIKey) >= 4 && strings.Contains(s, d.cfg.APIKey) {
		s = strings.ReplaceAll(s, d.cfg.APIKey, RedactKey(d.cfg.APIKey))
	}
	return s
}

// getPage requests and parses one page.
func (d *Dataroom) getPage(ctx context.Context, u string) (*dataroomPage, error) {
	var page *dataroomPage
	_, err := d.get(ctx, u, true, u, func(body []byte) error {
		p, err := parseDataroomPage(body)
		page = p
		return err
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}
