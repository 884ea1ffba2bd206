// Package httpretry is the HTTP plumbing the networked sources share: the client they build, the
// retry policy (which statuses are transient, backoff with jitter, Retry-After), bounded body reads
// and the redaction of credentials in messages. It also reads the two source_config keys that set
// the policy, timeout_s and max_retries, with the same bounds for every source.
package httpretry

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/datago-dev/datago/internal/cenv"
	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/source"
)

// Bounds of source_config.timeout_s and max_retries.
const (
	MaxTimeout    = 24 * time.Hour
	MaxRetries    = 100
	MaxBackoff    = 10 * time.Second // the longest wait between two attempts
	MaxRetryAfter = 30 * time.Second // a server's Retry-After is honoured up to this
)

// ReadPolicy reads source_config.timeout_s (seconds, > 0 and <= 86400) and max_retries (0 to 100);
// timeout and retries hold the defaults on entry.
func ReadPolicy(r *confread.Reader, sc *confread.Object, timeout *time.Duration, retries *int) {
	secs := timeout.Seconds()
	r.Float(sc, "timeout_s", &secs)
	if !r.Failed() && (secs <= 0 || secs > MaxTimeout.Seconds()) {
		r.Fail(sc.Key("timeout_s"), fmt.Sprintf("must be > 0 and <= %g, got %g", MaxTimeout.Seconds(), secs))
	}
	*timeout = time.Duration(secs * float64(time.Second))
	EnvDefault(r, EnvMaxRetries, retries, 0, MaxRetries)
	r.IntegerIn(sc, "max_retries", retries, 0, MaxRetries)
}

// EnvMaxRetries, when set, replaces the default of max_retries (the Rust loader's variable).
const EnvMaxRetries = "DATAGO_MAX_RETRIES"

// EnvDefault sets *dst from the environment variable name when it is set (a default that the
// config's own key still overrides); a value that is not an integer from min to max is a mistake
// reported under the variable's name.
func EnvDefault(r *confread.Reader, name string, dst *int, min, max int) {
	v := strings.TrimSpace(cenv.Getenv(name))
	if v == "" || r.Failed() {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		r.Fail(name, fmt.Sprintf("(environment variable) must be an integer from %d to %d, got %q", min, max, v))
		return
	}
	*dst = n
}

// Options shape the client of one source.
type Options struct {
	RequestTimeout time.Duration // the whole request, body included; 0: none (a stream's own watchdog)
	ConnectTimeout time.Duration // dialling, and the TLS handshake
	HeaderTimeout  time.Duration // waiting for the response headers; 0: none
	IdlePerHost    int           // idle keep-alive connections kept per host
	// Raw turns off transparent gzip, so that byte offsets are those of the file (Range requests).
	Raw bool
	// MaxRedirects caps the redirects followed; 0 leaves net/http's default (10).
	MaxRedirects int
}

// NewClient returns a client with keep-alive connections shared by every request of a source.
func NewClient(o Options) *http.Client {
	dialer := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	c := &http.Client{
		Timeout: o.RequestTimeout,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          max(100, 2*o.IdlePerHost),
			MaxIdleConnsPerHost:   o.IdlePerHost,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   o.ConnectTimeout,
			ResponseHeaderTimeout: o.HeaderTimeout,
			ExpectContinueTimeout: time.Second,
			DisableCompression:    o.Raw,
		},
	}
	if n := o.MaxRedirects; n > 0 {
		// net/http already drops the Authorization header on a redirect to another origin.
		c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if len(via) >= n {
				return fmt.Errorf("stopped after %d redirects", n)
			}
			return nil
		}
	}
	return c
}

// Transient reports whether a retry may fix a response with this status.
func Transient(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500
}

// Backoff is the wait before retry number attempt (1, 2, ...): base·2^(attempt-1), capped at
// MaxBackoff, with "equal jitter" (between half and all of it), so that clients failing together do
// not retry together.
func Backoff(base time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, MaxBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

// RetryAfter reads a Retry-After header given in seconds, capped at MaxRetryAfter (0 when absent).
func RetryAfter(h http.Header) time.Duration {
	s, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After")))
	if err != nil || s <= 0 {
		return 0
	}
	return min(time.Duration(s)*time.Second, MaxRetryAfter)
}

// Wait is the wait before retry number attempt after a failure whose answer asked for retryAfter
// (RetryAfter's reading; 0 when it asked nothing): the longer of that, capped at MaxRetryAfter, and
// Backoff(base, attempt). One rule for every client datago drives itself and every SDK it wraps.
func Wait(base time.Duration, attempt int, retryAfter time.Duration) time.Duration {
	return max(Backoff(base, attempt), min(retryAfter, MaxRetryAfter))
}

// Sleep waits d, or less if ctx ends first (then it returns ctx's error).
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ReadBody reads a whole response body of at most limit (> 0) bytes, in one allocation when its
// length is announced (io.ReadAll would grow and copy its buffer a dozen times for a few-megabyte
// image). A longer body is a *source.TooLargeError without its What.
func ReadBody(resp *http.Response, limit int64) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, &source.TooLargeError{Size: resp.ContentLength, Limit: limit}
	}
	if n := resp.ContentLength; n > 0 && n < 1<<31 {
		body := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, body); err != nil {
			return nil, err
		}
		return body, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err == nil && int64(len(body)) > limit {
		return nil, &source.TooLargeError{Size: -1, Limit: limit}
	}
	return body, err
}

// RedactKey shows at most the last 4 characters of an API key (none of a short one).
func RedactKey(key string) string {
	switch {
	case key == "":
		return ""
	case len(key) < 12:
		return "****"
	}
	return "…" + key[len(key)-4:]
}

// Redact replaces key in s by RedactKey(key), should a server, a proxy or a parser echo it. Keys
// shorter than 4 characters are left alone: they would match ordinary text.
func Redact(s, key string) string {
	if len(key) >= 4 && strings.Contains(s, key) {
		s = strings.ReplaceAll(s, key, RedactKey(key))
	}
	return s
}

// RedactURL drops the query and the user of a URL: signed URLs carry credentials there.
func RedactURL(raw string) string {
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

// Truncate cuts s to n bytes, marking the cut with "…".
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
