package httpretry

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/source"
)

func TestReadBodyRefusesBodiesOverTheLimit(t *testing.T) {
	body := strings.Repeat("x", 100)
	for _, tc := range []struct {
		length int64 // announced; -1: chunked
		limit  int64
		ok     bool
	}{
		{100, 100, true}, {100, 99, false}, {-1, 100, true}, {-1, 99, false}, {-1, 1 << 20, true},
	} {
		resp := &http.Response{ContentLength: tc.length, Body: io.NopCloser(strings.NewReader(body))}
		got, err := ReadBody(resp, tc.limit)
		var tl *source.TooLargeError
		switch {
		case tc.ok && (err != nil || string(got) != body):
			t.Errorf("%+v: %d bytes, %v", tc, len(got), err)
		case !tc.ok && (!errors.As(err, &tl) || tl.SkipReason() != source.ReasonTooLarge):
			t.Errorf("%+v: want a TooLargeError, got %v", tc, err)
		}
	}
}

func TestBackoff(t *testing.T) {
	for attempt := 1; attempt < 12; attempt++ {
		want := min(100*time.Millisecond<<(attempt-1), MaxBackoff)
		for i := 0; i < 20; i++ {
			if d := Backoff(100*time.Millisecond, attempt); d < want/2 || d > want {
				t.Fatalf("attempt %d: %v not in [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

func TestWaitHonoursRetryAfterUpToItsCap(t *testing.T) {
	for _, tc := range []struct {
		header   string
		min, max time.Duration
	}{
		{"", 50 * time.Millisecond, 100 * time.Millisecond}, // the backoff alone
		{"2", 2 * time.Second, 2 * time.Second},
		{" 3 ", 3 * time.Second, 3 * time.Second},
		{"3600", MaxRetryAfter, MaxRetryAfter},
		{"Wed, 21 Oct 2015 07:28:00 GMT", 50 * time.Millisecond, 100 * time.Millisecond}, // dates are not read
		{"-5", 50 * time.Millisecond, 100 * time.Millisecond},
	} {
		h := http.Header{}
		if tc.header != "" {
			h.Set("Retry-After", tc.header)
		}
		if got := Wait(100*time.Millisecond, 1, RetryAfter(h)); got < tc.min || got > tc.max {
			t.Errorf("Retry-After %q: waited %v, want %v to %v", tc.header, got, tc.min, tc.max)
		}
	}
}
