// Package gcs is the storage backend of gs://bucket/key URLs, Google Cloud Storage, through its JSON
// API (objects.list, paginated; media downloads pinned to the object's generation) over net/http,
// with golang.org/x/oauth2/google for Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS,
// the gcloud user credentials file, the metadata server), whose tokens it refreshes before they
// expire. It is far lighter than cloud.google.com/go/storage (gRPC, OpenTelemetry) for the two calls
// datago makes. STORAGE_EMULATOR_HOST sends every request, unauthenticated, to an emulator.
package gcs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"github.com/datago-dev/datago/internal/source/httpretry"
	"github.com/datago-dev/datago/internal/storage/blob"
)

// Options are the transport settings the source gives every backend.
type Options struct {
	Timeout    time.Duration
	MaxRetries int // listing pages asked again after a transient failure
	Backoff    time.Duration
	Conns      int
	Anonymous  bool   // source_config.storage.anonymous: public buckets, no credential lookup
	Endpoint   string // source_config.storage.endpoint_url, else STORAGE_EMULATOR_HOST, else Google's
}

const readOnlyScope = "https://www.googleapis.com/auth/devstorage.read_only"

// Backend reads gs:// URLs.
type Backend struct {
	o        Options
	base     string // scheme://host, without a trailing slash
	emulated bool
	client   *http.Client

	once   sync.Once
	tokens oauth2.TokenSource
	ts     error
}

// New sends nothing: credentials are looked for at the first request.
func New(o Options) (*Backend, error) {
	b := &Backend{o: o, base: "https://storage.googleapis.com"}
	if o.Endpoint != "" {
		b.base = strings.TrimRight(o.Endpoint, "/")
	} else if h := os.Getenv("STORAGE_EMULATOR_HOST"); h != "" {
		if !strings.Contains(h, "://") {
			h = "http://" + h
		}
		b.base, b.emulated = strings.TrimRight(h, "/"), true
	}
	if u, err := url.Parse(b.base); err != nil || u.Host == "" {
		return nil, fmt.Errorf("gcs: endpoint %q is not a URL", httpretry.RedactURL(b.base))
	}
	b.client = httpretry.NewClient(httpretry.Options{ConnectTimeout: o.Timeout, HeaderTimeout: o.Timeout,
		IdlePerHost: max(2, o.Conns), Raw: true})
	return b, nil
}

// Split returns the bucket and object name of a gs:// URL.
func Split(u string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(u, "gs://")
	if !ok {
		return "", "", fmt.Errorf("%q is not a gs:// URL", u)
	}
	bucket, key, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("%q names no bucket (gs://bucket/key)", u)
	}
	return bucket, key, nil
}

func (b *Backend) authorize(ctx context.Context, req *http.Request) error {
	if b.o.Anonymous || b.emulated {
		return nil
	}
	b.once.Do(func() {
		creds, err := google.FindDefaultCredentials(context.Background(), readOnlyScope)
		if err != nil {
			b.ts = fmt.Errorf("gcs: no Application Default Credentials (set GOOGLE_APPLICATION_CREDENTIALS, or storage.anonymous for a public bucket): %w", err)
			return
		}
		b.tokens = oauth2.ReuseTokenSource(nil, creds.TokenSource)
	})
	if b.ts != nil {
		return b.ts
	}
	tok, err := b.tokens.Token()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 && re.Response.StatusCode != http.StatusTooManyRequests {
			// The token endpoint refused the credentials (a revoked key, a wrong account): a
			// configuration mistake no retry fixes, reported with the endpoint's own code.
			code, desc := re.ErrorCode, re.ErrorDescription
			if code == "" {
				// The service-account (JWT) flow leaves the RFC 6749 body to its caller.
				var body struct {
					Error       string `json:"error"`
					Description string `json:"error_description"`
				}
				if json.Unmarshal(re.Body, &body) == nil {
					code, desc = body.Error, body.Description
				}
			}
			if code == "" {
				code = http.StatusText(re.Response.StatusCode)
			}
			return &blob.Error{Provider: "gcs", Status: re.Response.StatusCode, Code: code,
				Message: "the token endpoint refused the credentials: " + httpretry.Truncate(desc, 200)}
		}
		return fmt.Errorf("gcs: getting a token: %w", err)
	}
	tok.SetAuthHeader(req)
	return nil
}

func (b *Backend) do(ctx context.Context, u string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if err := b.authorize(ctx, req); err != nil {
		return nil, err
	}
	return b.client.Do(req)
}

type listing struct {
	Items []struct {
		Name       string `json:"name"`
		Size       string `json:"size"`
		Generation string `json:"generation"`
	} `json:"items"`
	NextPageToken string `json:"nextPageToken"`
}

// List pages through objects.list, whose order is the names' lexicographic order.
func (b *Backend) List(ctx context.Context, prefix string, fn func(blob.Object) bool) error {
	bucket, key, err := Split(prefix)
	if err != nil {
		return err
	}
	token := ""
	for {
		q := url.Values{"prefix": {key}, "maxResults": {"1000"}, "fields": {"items(name,size,generation),nextPageToken"}}
		if token != "" {
			q.Set("pageToken", token)
		}
		page, err := b.page(ctx, fmt.Sprintf("%s/storage/v1/b/%s/o?%s", b.base, url.PathEscape(bucket), q.Encode()), prefix)
		if err != nil {
			return err
		}
		for _, it := range page.Items {
			if strings.HasSuffix(it.Name, "/") {
				continue
			}
			size, _ := strconv.ParseInt(it.Size, 10, 64)
			o := blob.Object{URL: "gs://" + bucket + "/" + it.Name, Key: strings.TrimPrefix(it.Name, key), Size: size, Version: it.Generation}
			if !fn(o) {
				return nil
			}
		}
		if token = page.NextPageToken; token == "" {
			return nil
		}
	}
}

// page fetches one listing page, again after a transient failure.
func (b *Backend) page(ctx context.Context, u, prefix string) (*listing, error) {
	for attempt := 1; ; attempt++ {
		l, err := b.pageOnce(ctx, u, prefix)
		if err == nil || ctx.Err() != nil || attempt > b.o.MaxRetries || !b.Retryable(err) {
			return l, err
		}
		wait := httpretry.Wait(b.o.Backoff, attempt, blob.RetryAfter(err))
		if err := httpretry.Sleep(ctx, wait); err != nil {
			return nil, err
		}
	}
}

func (b *Backend) pageOnce(ctx context.Context, u, prefix string) (*listing, error) {
	resp, err := b.do(ctx, u, nil)
	if err != nil {
		return nil, opError(err, "list", prefix)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fail(resp, "list", prefix)
	}
	var l listing
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&l); err != nil {
		return nil, &blob.Error{Provider: "gcs", URL: prefix, Op: "list", Err: fmt.Errorf("listing page: %w", err)}
	}
	return &l, nil
}

// Open downloads the object's media from off, pinned to generation version when it is set.
func (b *Backend) Open(ctx context.Context, u string, off int64, version string) (io.ReadCloser, blob.Info, error) {
	bucket, key, err := Split(u)
	if err != nil {
		return nil, blob.Info{}, err
	}
	q := url.Values{"alt": {"media"}}
	if version != "" {
		q.Set("generation", version)
	}
	target := fmt.Sprintf("%s/storage/v1/b/%s/o/%s?%s", b.base, url.PathEscape(bucket), url.PathEscape(key), q.Encode())
	h := http.Header{}
	if off > 0 {
		h.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := b.do(ctx, target, h)
	if err != nil {
		return nil, blob.Info{}, opError(err, "read", u)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return nil, blob.Info{}, fail(resp, "read", u)
	}
	if off > 0 && resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, blob.Info{}, &blob.Error{Provider: "gcs", URL: u, Op: "read", Err: errors.New("the server ignored Range")}
	}
	info := blob.Info{Version: resp.Header.Get("X-Goog-Generation")}
	if info.Version == "" {
		info.Version = version
	}
	info.Size = blob.ObjectSize(resp, off)
	return resp.Body, info, nil
}

// opError names the operation of a failed request: a refusal of the credentials keeps its code.
func opError(err error, op, u string) error {
	var be *blob.Error
	if errors.As(err, &be) && be.URL == "" {
		be.URL, be.Op = u, op
		return be
	}
	return &blob.Error{Provider: "gcs", URL: u, Op: op, Err: err}
}

// Retryable: connection errors, 5xx, 408 and 429.
func (b *Backend) Retryable(err error) bool {
	var be *blob.Error
	if errors.As(err, &be) && be.Status != 0 {
		return httpretry.Transient(be.Status)
	}
	return errors.As(err, &be) && be.Code == ""
}

// fail reads the JSON API's error ({"error": {"code", "message", "errors": [{"reason"}]}}).
func fail(resp *http.Response, op, u string) error {
	defer resp.Body.Close()
	var body struct {
		Error struct {
			Message string `json:"message"`
			Errors  []struct {
				Reason string `json:"reason"`
			} `json:"errors"`
		} `json:"error"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 8192))
	e := &blob.Error{Provider: "gcs", URL: u, Op: op, Status: resp.StatusCode, RetryAfter: httpretry.RetryAfter(resp.Header)}
	if json.Unmarshal(raw, &body) == nil && body.Error.Message != "" {
		e.Message = httpretry.Truncate(body.Error.Message, 300)
		if len(body.Error.Errors) > 0 {
			e.Code = body.Error.Errors[0].Reason
		}
	} else {
		e.Message = httpretry.Truncate(strings.TrimSpace(string(raw)), 200)
	}
	if e.Code == "" {
		e.Code = http.StatusText(resp.StatusCode)
	}
	// 404: no such object, or (pinned) no longer that generation: either way never spliced, counted
	// not_found. No such bucket is a configuration mistake.
	e.NotFound = resp.StatusCode == http.StatusNotFound && !strings.Contains(strings.ToLower(e.Message), "bucket")
	return e
}
