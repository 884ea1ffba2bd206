// Package blob is what the storage backends share with the storage layer that dispatches to them:
// an object of a listing, what a read learns about its object, the provider error, and the Backend
// interface each provider implements. A backend package imports it without importing the others.
package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/datago-dev/datago/internal/source"
)

// Object is one object of a listing.
type Object struct {
	URL     string // the full URL (scheme://bucket/key): the sample id
	Key     string // the key relative to the listed prefix, hashed for rank dispatch
	Size    int64
	Version string // what pins a read to this content (an ETag, a generation, a version id)
}

// Info is what opening a read learns about its object.
type Info struct {
	Size    int64  // the whole object's length, -1 when unknown
	Version string // as in Object
}

// Backend is one provider (S3, ...).
type Backend interface {
	// List calls fn for every object under the prefix URL, in the provider's lexicographic key
	// order, fetching one page at a time, until the listing ends or fn returns false. A prefix that
	// does not end with "/" matches keys that start with it, as the providers' APIs do.
	List(ctx context.Context, prefix string, fn func(Object) bool) error
	// Open reads the object at url from byte off (0: the whole object). A non-empty version pins the
	// read: when the object no longer has it, Open returns an error matching ErrChanged.
	Open(ctx context.Context, url string, off int64, version string) (io.ReadCloser, Info, error)
	// Retryable reports whether a failed Open or a broken body may succeed when tried again.
	Retryable(err error) bool
}

// ErrChanged is returned when an object changed while it was read: its bytes are never spliced.
var ErrChanged = errors.New("the object changed while it was read")

// ErrNotFound matches the error of a missing object.
var ErrNotFound = errors.New("no such object")

// Error is a provider's refusal, with its own code and message (never a credential).
type Error struct {
	Provider string // "s3", ...
	URL      string // the object or prefix, without query
	Op       string // "list", "read"
	Status   int    // the HTTP status, 0 when unknown
	Code     string // the provider's error code (AccessDenied, NoSuchBucket, ...)
	Message  string
	NotFound bool // the object, bucket or prefix does not exist
	Changed  bool // a version pin no longer holds
	// RetryAfter is the wait the answer asked for (its Retry-After header, capped as
	// httpretry.RetryAfter caps it); 0 when it asked none.
	RetryAfter time.Duration
	Err        error
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("%s %s: %s", e.Op, e.URL, e.Code)
	if e.Status != 0 {
		msg += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Code == "" && e.Err != nil {
		msg = fmt.Sprintf("%s %s: %v", e.Op, e.URL, e.Err)
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

// Is lets errors.Is(err, ErrNotFound) and errors.Is(err, ErrChanged) match.
func (e *Error) Is(target error) bool {
	return target == ErrNotFound && e.NotFound || target == ErrChanged && e.Changed
}

// SkipReason: an object that disappeared between its listing and its read is not_found; every
// other failure is a read_error.
func (e *Error) SkipReason() string {
	if e.NotFound {
		return source.ReasonNotFound
	}
	return source.ReasonReadError
}

// RetryAfter is the wait a failed request's answer asked for, 0 when err carries none.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// ObjectSize is the whole object's size as an HTTP read from byte off tells it: the total of a
// Content-Range, or off plus the body's length; -1 when the response says neither.
func ObjectSize(resp *http.Response, off int64) int64 {
	if cr := resp.Header.Get("Content-Range"); cr != "" {
		if _, total, ok := strings.Cut(cr, "/"); ok {
			if n, err := strconv.ParseInt(total, 10, 64); err == nil {
				return n
			}
		}
		return -1
	}
	if resp.ContentLength >= 0 {
		return off + resp.ContentLength
	}
	return -1
}
