// Package s3 is the storage backend of s3:// URLs: AWS S3 and the S3-compatible stores (R2, MinIO,
// Ceph, GCS interoperability), through the AWS SDK for Go v2. Credentials come from the SDK's
// standard chain (environment, shared config and credentials files with AWS_PROFILE,
// credential_process, web identity, container and instance metadata), cached and refreshed by the
// SDK before they expire; AWS_ENDPOINT_URL(_S3) and AWS_REGION are read by the SDK too.
package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/datago-dev/datago/internal/source/httpretry"
	"github.com/datago-dev/datago/internal/storage/blob"
)

// Config is the S3 part of source_config.storage; every field's zero value leaves the SDK's own
// resolution (environment, shared config) in charge.
type Config struct {
	EndpointURL string // "": AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the profile's, then AWS itself
	Region      string // "": AWS_REGION, the profile's, then us-east-1
	Profile     string // "": AWS_PROFILE, then "default"
	Anonymous   bool   // unsigned requests (public buckets): no credential lookup at all
	PathStyle   bool   // https://endpoint/bucket/key instead of https://bucket.endpoint/key
}

// Options are the transport settings the source gives every backend.
type Options struct {
	Timeout    time.Duration // connecting and waiting for response headers
	MaxRetries int           // retries of one request (5xx, throttling, connection errors)
	Backoff    time.Duration // wait before a listing page is asked again, doubled each time
	Conns      int           // idle connections kept per host
}

// Backend reads s3:// URLs with one SDK client.
type Backend struct {
	client *s3.Client
	o      Options
}

// New builds the client. It reads configuration files and the environment but sends nothing:
// credentials are resolved (and cached) at the first request, so a configuration that never
// reads an s3:// URL never pays for credential discovery.
func New(ctx context.Context, cfg Config, o Options) (*Backend, error) {
	httpClient := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = o.Timeout }).
		WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConnsPerHost = max(2, o.Conns)
			t.ResponseHeaderTimeout = o.Timeout
			t.DisableCompression = true // byte offsets must be the object's (ranged resume)
		})
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithHTTPClient(httpClient),
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxRetries + 1
				so.MaxBackoff = 10 * time.Second
				// The client-side retry quota would turn a long throttling episode into failures
				// of a run that is meant to wait it out.
				so.RateLimiter = ratelimit.None
				so.Backoff = retryAfterDelayer{retry.NewExponentialJitterBackoff(so.MaxBackoff)}
			})
		}),
	}
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.Profile != "" {
		opts = append(opts, awsconfig.WithSharedConfigProfile(cfg.Profile))
	}
	if cfg.Anonymous {
		opts = append(opts, awsconfig.WithCredentialsProvider(aws.AnonymousCredentials{}))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: loading the AWS configuration: %w", err)
	}
	if ac.Region == "" {
		ac.Region = "us-east-1" // S3-compatible stores mostly ignore it; AWS redirects
	}
	client := s3.NewFromConfig(ac, func(so *s3.Options) {
		if cfg.EndpointURL != "" {
			so.BaseEndpoint = aws.String(cfg.EndpointURL)
		}
		so.UsePathStyle = cfg.PathStyle
	})
	return &Backend{client: client, o: o}, nil
}

// retryAfterDelayer waits what a refused attempt's Retry-After asks for (a 503 SlowDown or a 429 of
// a store or proxy that sends one), by httpretry's rule, else the SDK's exponential backoff with
// jitter: the SDK's standard retryer ignores the header.
type retryAfterDelayer struct{ backoff retry.BackoffDelayer }

func (d retryAfterDelayer) BackoffDelay(attempt int, err error) (time.Duration, error) {
	wait, berr := d.backoff.BackoffDelay(attempt, err)
	if berr != nil {
		return wait, berr
	}
	return max(wait, min(retryAfter(err), httpretry.MaxRetryAfter)), nil
}

// retryAfter reads the Retry-After of the response an SDK error carries (0 when none).
func retryAfter(err error) time.Duration {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil && re.Response.Response != nil {
		return httpretry.RetryAfter(re.Response.Header)
	}
	return 0
}

// Split returns the bucket and key of an s3:// URL.
func Split(u string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(u, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3:// URL", u)
	}
	bucket, key, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("%q names no bucket (s3://bucket/key)", u)
	}
	return bucket, key, nil
}

// List pages through ListObjectsV2, whose order is the keys' UTF-8 binary order.
func (b *Backend) List(ctx context.Context, prefix string, fn func(blob.Object) bool) error {
	bucket, key, err := Split(prefix)
	if err != nil {
		return err
	}
	p := s3.NewListObjectsV2Paginator(b.client, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(key)})
	for p.HasMorePages() {
		page, err := b.nextPage(ctx, p)
		if err != nil {
			return wrap("list", prefix, err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if strings.HasSuffix(k, "/") {
				continue // a "directory" marker
			}
			obj := blob.Object{URL: "s3://" + bucket + "/" + k, Key: strings.TrimPrefix(k, key),
				Size: aws.ToInt64(o.Size), Version: aws.ToString(o.ETag)}
			if !fn(obj) {
				return nil
			}
		}
	}
	return nil
}

// nextPage asks for the next page, again when the answer broke off: the SDK retries failed requests,
// not a response body cut while it was parsed, and the paginator keeps its token until a page succeeds.
func (b *Backend) nextPage(ctx context.Context, p *s3.ListObjectsV2Paginator) (*s3.ListObjectsV2Output, error) {
	for attempt := 1; ; attempt++ {
		page, err := p.NextPage(ctx)
		if err == nil || ctx.Err() != nil || attempt > b.o.MaxRetries || !b.Retryable(wrap("list", "", err)) {
			return page, err
		}
		wait := httpretry.Wait(b.o.Backoff, attempt, retryAfter(err))
		if err := httpretry.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

// Open sends one GetObject, ranged from off and conditional on the ETag when version is set.
func (b *Backend) Open(ctx context.Context, u string, off int64, version string) (io.ReadCloser, blob.Info, error) {
	bucket, key, err := Split(u)
	if err != nil {
		return nil, blob.Info{}, err
	}
	in := &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)}
	if off > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", off))
	}
	if version != "" {
		in.IfMatch = aws.String(version)
	}
	out, err := b.client.GetObject(ctx, in)
	if err != nil {
		return nil, blob.Info{}, wrap("read", u, err)
	}
	info := blob.Info{Size: -1, Version: aws.ToString(out.ETag)}
	if total, ok := rangeTotal(aws.ToString(out.ContentRange)); ok {
		info.Size = total
	} else if out.ContentLength != nil {
		info.Size = off + *out.ContentLength
	}
	return out.Body, info, nil
}

// Retryable: the SDK already retried what a retry may fix (5xx, throttling, SlowDown, connection
// errors), so only a broken connection (no HTTP answer, or a successful one whose body broke while
// it was read) is worth another round: retrying a refused request again would multiply the SDK's
// attempts (a store that keeps answering 500 made a listing wait (max_retries+1)² attempts).
func (b *Backend) Retryable(err error) bool {
	var be *blob.Error
	if errors.As(err, &be) {
		return be.Status < 300
	}
	return true
}

// rangeTotal reads the total of "bytes a-b/total".
func rangeTotal(v string) (int64, bool) {
	_, total, ok := strings.Cut(v, "/")
	if !ok || total == "*" {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil
}

// wrap turns an SDK error into a *blob.Error with the provider's code and message.
func wrap(op, u string, err error) error {
	e := &blob.Error{Provider: "s3", URL: u, Op: op, Err: err, RetryAfter: retryAfter(err)}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		e.Status = re.HTTPStatusCode()
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		e.Code, e.Message = api.ErrorCode(), api.ErrorMessage()
	}
	var nsk *types.NoSuchKey
	switch {
	case e.Code == "NoSuchBucket":
		// Not a missing object: a configuration mistake, refused whatever the key.
	case errors.As(err, &nsk), e.Code == "NotFound", e.Status == http.StatusNotFound:
		e.NotFound = true
	case e.Code == "PreconditionFailed", e.Status == http.StatusPreconditionFailed:
		e.Changed = true
		if e.Message == "" {
			e.Message = blob.ErrChanged.Error()
		}
	}
	if e.Code == "" && e.Status >= 300 {
		e.Code = http.StatusText(e.Status)
	}
	return e
}
