package s3

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/retry"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/datago-dev/datago/internal/source/httpretry"
)

func TestRetryAfterDelayerWaitsWhatTheAnswerAsks(t *testing.T) {
	d := retryAfterDelayer{retry.NewExponentialJitterBackoff(10 * time.Second)}
	answer := func(retryAfter string) error {
		h := http.Header{}
		if retryAfter != "" {
			h.Set("Retry-After", retryAfter)
		}
		resp := &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusServiceUnavailable, Header: h}}
		return &smithyhttp.ResponseError{Response: resp, Err: errors.New("SlowDown")}
	}
	for _, tc := range []struct {
		err      error
		min, max time.Duration
	}{
		{answer("2"), 2 * time.Second, 2 * time.Second},
		{answer("600"), httpretry.MaxRetryAfter, httpretry.MaxRetryAfter},
		{answer(""), 0, 2 * time.Second},          // the SDK's backoff: up to 2^1 s at the first retry
		{errors.New("reset"), 0, 2 * time.Second}, // no response at all
	} {
		got, err := d.BackoffDelay(1, tc.err)
		if err != nil || got < tc.min || got > tc.max {
			t.Errorf("%v: waited %v (%v), want %v to %v", tc.err, got, err, tc.min, tc.max)
		}
	}
}
