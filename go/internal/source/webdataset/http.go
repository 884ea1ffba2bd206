package webdataset

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/datago-dev/datago/internal/source/httpretry"
)

// newHTTPClient returns the client shared by a source's shard streams: connections are kept alive and
// reused across shards; no transparent gzip (byte offsets must be those of the file, for Range);
// timeouts for connecting and for the response headers. A stalled body is caught by httpStream.
//
// With auth, a redirect keeps the Authorization header only towards the host (and port) of the
// request it follows from: net/http would also forward it to subdomains and other ports, and a
// Hugging Face token must not reach the storage its downloads redirect to.
func newHTTPClient(timeout time.Duration, conns int, auth bool) *http.Client {
	c := httpretry.NewClient(httpretry.Options{
		ConnectTimeout: timeout,
		HeaderTimeout:  timeout,
		IdlePerHost:    max(2, 2*conns),
		Raw:            true,
	})
	if auth {
		c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return fmt.Errorf("stopped after %d redirects", maxRedirects)
			}
			if req.URL.Host != via[0].URL.Host || req.URL.Scheme != via[0].URL.Scheme {
				req.Header.Del("Authorization")
			}
			return nil
		}
	}
	return c
}

// maxRedirects is net/http's default limit.
const maxRedirects = 10

// httpStream reads one shard over HTTP(S) as a single stream of bytes. When a request fails (connection
// error, timeout, HTTP 5xx, 408 or 429) it retries with exponential backoff; when the body breaks or
// stalls for longer than timeout it reconnects and asks for the rest with a Range request. A server
// that ignores Range sends the whole file again: the bytes already read are then discarded, after
// checking that the file did not change (ETag, Last-Modified, length). Read returns a *streamError when
// maxRetries consecutive attempts made no progress, or on an error that retrying cannot fix (HTTP 404).
type httpStream struct {
	ctx        context.Context
	client     *http.Client
	url        string
	token      string // auth_token: a bearer token for the shard's own host
	timeout    time.Duration
	maxRetries int
	backoff    time.Duration

	body    io.ReadCloser
	cancel  context.CancelFunc // cancels the current request
	timer   *time.Timer        // cancels it when no byte arrives for timeout
	off     int64              // bytes delivered so far
	end     int64              // > 0: read up to this byte only, with a closed Range (a planned run's sample)
	size    int64              // length of the file, -1 when unknown
	etag    string
	lastMod string
	opened  bool  // a first response was accepted: size, etag and lastMod describe the file
	fails   int   // consecutive failed attempts without progress
	lastErr error // why the last attempt failed
	resumes int   // reconnections after a broken body (tests)
	eof     bool  // the whole file was read
}

func newHTTPStream(ctx context.Context, client *http.Client, url string, timeout time.Duration, maxRetries int, backoff time.Duration) *httpStream {
	return &httpStream{ctx: ctx, client: client, url: url, timeout: timeout, maxRetries: maxRetries, backoff: backoff, size: -1}
}

func (h *httpStream) Read(p []byte) (int, error) {
	if h.eof {
		return 0, io.EOF
	}
	for {
		if h.body == nil {
			if err := h.connect(); err != nil {
				return 0, err
			}
		}
		n, err := h.body.Read(p)
		if n > 0 {
			h.off += int64(n)
			h.fails = 0
			h.timer.Reset(h.timeout)
		}
		if err == nil {
			return n, nil
		}
		if err == io.EOF && (h.end > 0 && h.off >= h.end || h.end == 0 && (h.size < 0 || h.off >= h.size)) {
			h.closeBody()
			h.eof = true
			return n, io.EOF
		}
		stalled := h.ctx.Err() == nil && h.reqCancelled()
		h.closeBody()
		if h.ctx.Err() != nil {
			return n, &streamError{h.ctx.Err()}
		}
		switch {
		case stalled:
			err = fmt.Errorf("no data for %v", h.timeout)
		case err == io.EOF:
			err = fmt.Errorf("the body ended at byte %d of %d", h.off, h.size)
		}
		h.lastErr = err
		h.fails++
		h.resumes++
		if n > 0 {
			return n, nil // the next Read reconnects
		}
	}
}

// reqCancelled reports whether the current request's watchdog fired.
func (h *httpStream) reqCancelled() bool {
	return !h.timer.Stop() // Stop returns false when the timer already fired
}

func (h *httpStream) closeBody() {
	if h.body != nil {
		h.timer.Stop()
		h.body.Close()
		h.cancel()
		h.body = nil
	}
}

// Close releases the connection.
func (h *httpStream) Close() error {
	h.closeBody()
	return nil
}

// connect opens a response positioned at h.off, retrying as documented on httpStream.
func (h *httpStream) connect() error {
	for {
		if h.fails > h.maxRetries {
			return &streamError{fmt.Errorf("giving up after %d failed attempts: %w", h.fails, h.lastErr)}
		}
		if h.fails > 0 {
			if err := httpretry.Sleep(h.ctx, httpretry.Backoff(h.backoff, h.fails)); err != nil {
				return &streamError{err}
			}
		}
		retry, err := h.attempt()
		if err == nil {
			return nil
		}
		if h.ctx.Err() != nil {
			return &streamError{h.ctx.Err()}
		}
		h.lastErr = err
		if !retry {
			return &streamError{err}
		}
		h.fails++
	}
}

// attempt sends one request. On success h.body reads from h.off; otherwise it says whether to retry.
func (h *httpStream) attempt() (retry bool, err error) {
	ctx, cancel := context.WithCancel(h.ctx)
	timer := time.AfterFunc(h.timeout, cancel)
	fail := func(resp *http.Response, retry bool, err error) (bool, error) {
		timer.Stop()
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) // lets the connection be reused
			resp.Body.Close()
		}
		cancel()
		return retry, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.url, nil)
	if err != nil {
		return fail(nil, false, err)
	}
	switch {
	case h.end > 0: // the connection stays reusable: the body ends where the caller stops reading
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", h.off, h.end-1))
	case h.off > 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", h.off))
	}
	if h.token != "" {
		req.Header.Set("Authorization", "Bearer "+h.token)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if ctx.Err() != nil && h.ctx.Err() == nil {
			err = fmt.Errorf("no response within %v", h.timeout)
		}
		return fail(nil, true, err)
	}
	code := resp.StatusCode
	switch {
	case code == http.StatusPartialContent && (h.off > 0 || h.end > 0):
		start, total, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || start != h.off {
			return fail(resp, false, fmt.Errorf("bad Content-Range %q for a request from byte %d", resp.Header.Get("Content-Range"), h.off))
		}
		if err := h.sameFile(resp, total); err != nil {
			return fail(resp, false, err)
		}
	case code == http.StatusOK:
		if !h.opened {
			h.size = resp.ContentLength
			h.etag = resp.Header.Get("ETag")
			h.lastMod = resp.Header.Get("Last-Modified")
			h.opened = true
		} else if err := h.sameFile(resp, resp.ContentLength); err != nil {
			return fail(resp, false, err)
		}
		if h.off > 0 { // no Range support: skip what was already delivered
			skip := &watchdog{r: resp.Body, timer: timer, timeout: h.timeout}
			if _, err := io.CopyN(io.Discard, skip, h.off); err != nil {
				if ctx.Err() != nil && h.ctx.Err() == nil {
					err = fmt.Errorf("no data for %v", h.timeout)
				}
				return fail(resp, true, fmt.Errorf("skipping the first %d bytes again: %w", h.off, err))
			}
		}
	case code == http.StatusRequestedRangeNotSatisfiable && h.opened && h.size >= 0 && h.off >= h.size:
		resp.Body.Close()
		resp.Body = io.NopCloser(strings.NewReader(""))
	case httpretry.Transient(code):
		return fail(resp, true, &statusError{code, resp.Status})
	default:
		return fail(resp, false, &statusError{code, resp.Status})
	}
	h.body, h.cancel, h.timer = resp.Body, cancel, timer
	timer.Reset(h.timeout)
	return false, nil
}

// sameFile checks that a later response describes the file first read.
func (h *httpStream) sameFile(resp *http.Response, total int64) error {
	etag, lastMod := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	switch {
	case h.size >= 0 && total >= 0 && total != h.size:
		return fmt.Errorf("the shard changed on the server while it was read (length %d, then %d)", h.size, total)
	case h.etag != "" && etag != "" && etag != h.etag:
		return fmt.Errorf("the shard changed on the server while it was read (ETag %s, then %s)", h.etag, etag)
	case h.lastMod != "" && lastMod != "" && lastMod != h.lastMod:
		return fmt.Errorf("the shard changed on the server while it was read (Last-Modified %s, then %s)", h.lastMod, lastMod)
	}
	return nil
}

// contentRange reads "bytes start-end/total" (total may be "*", returned as -1).
func contentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	span, size, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	first, _, found := strings.Cut(span, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(strings.TrimSpace(first), 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	total = -1
	if size = strings.TrimSpace(size); size != "*" {
		if total, err = strconv.ParseInt(size, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}

// watchdog postpones timer by timeout at every read that makes progress.
type watchdog struct {
	r       io.Reader
	timer   *time.Timer
	timeout time.Duration
}

func (w *watchdog) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if n > 0 {
		w.timer.Reset(w.timeout)
	}
	return n, err
}
