// Package storage is the object-storage layer the sources use for every location that is a URL of
// an object store (s3://, gs://, az://, hf://): listing a prefix as a stream, and reading objects as streams that
// survive broken connections. It owns source_config.storage, the per-source overrides of the
// providers' own configuration. One sub-package per provider (s3, gcs, az, hf) holds that provider's IO; blob
// holds what they share.
package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/source/httpretry"
	"github.com/datago-dev/datago/internal/storage/az"
	"github.com/datago-dev/datago/internal/storage/blob"
	"github.com/datago-dev/datago/internal/storage/gcs"
	"github.com/datago-dev/datago/internal/storage/hf"
	"github.com/datago-dev/datago/internal/storage/s3"
)

// Object, Info and Error are the blob types, for the sources.
type (
	Object = blob.Object
	Error  = blob.Error
)

// ErrNotFound and ErrChanged, as in blob.
var (
	ErrNotFound = blob.ErrNotFound
	ErrChanged  = blob.ErrChanged
)

// Config is source_config.storage.
type Config struct {
	S3 s3.Config
}

// Policy is the transport policy a source gives its store.
type Policy struct {
	Timeout    time.Duration // connect, response headers, and the longest wait for a body's next byte
	MaxRetries int           // consecutive failed attempts before a read gives up
	Backoff    time.Duration // wait before the first retry, doubled at each one (with jitter)
	Conns      int           // connections kept per host (the fetchers, the shard readers)
}

// DefaultPolicy is the policy of a source without timeout_s / max_retries keys of its own.
var DefaultPolicy = Policy{Timeout: 30 * time.Second, MaxRetries: 5, Backoff: 250 * time.Millisecond, Conns: 8}

// schemes are the URL schemes this package serves.
var schemes = []string{"s3", "gs", "az", "hf"}

// Remote reports whether loc is a URL this package serves.
func Remote(loc string) bool {
	scheme, _, ok := strings.Cut(loc, "://")
	if !ok {
		return false
	}
	for _, s := range schemes {
		if strings.EqualFold(scheme, s) {
			return true
		}
	}
	return false
}

// Check validates the syntax of a remote location (no IO).
func Check(loc string) error {
	scheme, _, _ := strings.Cut(loc, "://")
	switch strings.ToLower(scheme) {
	case "s3", "gs", "az", "hf":
		if scheme != strings.ToLower(scheme) {
			return fmt.Errorf("%q: write the scheme in lower case (%s://)", loc, strings.ToLower(scheme))
		}
	default:
		return fmt.Errorf("%q: not a storage URL", loc)
	}
	switch scheme {
	case "hf":
		_, err := hf.Parse(loc)
		return err
	case "az":
		_, _, err := az.Split(loc)
		return err
	case "gs":
		_, _, err := gcs.Split(loc)
		return err
	}
	_, _, err := s3.Split(loc)
	return err
}

// Parse reads source_config.storage (optional). Every key overrides what the provider's own
// configuration (environment, files) would give.
func Parse(r *confread.Reader, sc *confread.Object) Config {
	var c Config
	o := r.Obj(sc, "storage", false)
	if o == nil {
		return c
	}
	r.Str(o, "endpoint_url", &c.S3.EndpointURL, false)
	if !r.Failed() && c.S3.EndpointURL != "" {
		u, err := url.Parse(c.S3.EndpointURL)
		switch {
		case err != nil:
			r.Fail(o.Key("endpoint_url"), err.Error())
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
			r.Fail(o.Key("endpoint_url"), fmt.Sprintf("must be an http:// or https:// URL with a host, got %q", httpretry.RedactURL(c.S3.EndpointURL)))
		case u.User != nil || u.RawQuery != "":
			r.Fail(o.Key("endpoint_url"), "must not carry credentials or a query (use the provider's credential chain)")
		}
	}
	r.Str(o, "region", &c.S3.Region, false)
	r.Str(o, "profile", &c.S3.Profile, false)
	r.Boolean(o, "anonymous", &c.S3.Anonymous)
	r.Boolean(o, "path_style", &c.S3.PathStyle)
	r.Finish(o)
	return c
}

// Store opens the backends a source needs, each once, on first use: a source with only local
// paths never loads a provider's configuration or looks for credentials.
type Store struct {
	cfg    Config
	policy Policy

	mu    sync.Mutex
	s3    *s3.Backend
	err   error
	hf    *hf.Backend
	hfErr error
	az    *az.Backend
	azErr error
	gs    *gcs.Backend
	gsErr error

	testBackend blob.Backend // tests: serves every URL
}

// New returns a store; nothing is contacted before the first List or read.
func New(cfg Config, p Policy) *Store { return &Store{cfg: cfg, policy: p} }

func (s *Store) backend(ctx context.Context, loc string) (blob.Backend, error) {
	if err := Check(loc); err != nil {
		return nil, err
	}
	if s.testBackend != nil {
		return s.testBackend, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if strings.HasPrefix(loc, "gs://") {
		if s.gs == nil && s.gsErr == nil {
			s.gs, s.gsErr = gcs.New(gcs.Options{Timeout: s.policy.Timeout, MaxRetries: s.policy.MaxRetries, Backoff: s.policy.Backoff,
				Conns: s.policy.Conns, Anonymous: s.cfg.S3.Anonymous, Endpoint: s.cfg.S3.EndpointURL})
		}
		if s.gsErr != nil {
			return nil, s.gsErr
		}
		return s.gs, nil
	}
	if strings.HasPrefix(loc, "az://") {
		if s.az == nil && s.azErr == nil {
			s.az, s.azErr = az.New(az.Options{Timeout: s.policy.Timeout, MaxRetries: s.policy.MaxRetries, EndpointURL: s.cfg.S3.EndpointURL})
		}
		if s.azErr != nil {
			return nil, s.azErr
		}
		return s.az, nil
	}
	if strings.HasPrefix(loc, "hf://") {
		if s.hf == nil && s.hfErr == nil {
			s.hf, s.hfErr = hf.New(hf.Options{Timeout: s.policy.Timeout, MaxRetries: s.policy.MaxRetries, Backoff: s.policy.Backoff,
				Conns: s.policy.Conns})
		}
		if s.hfErr != nil {
			return nil, s.hfErr
		}
		return s.hf, nil
	}
	if s.s3 == nil && s.err == nil {
		s.s3, s.err = s3.New(ctx, s.cfg.S3, s3.Options{Timeout: s.policy.Timeout, MaxRetries: s.policy.MaxRetries, Backoff: s.policy.Backoff, Conns: s.policy.Conns})
	}
	if s.err != nil {
		return nil, s.err
	}
	return s.s3, nil
}

// List streams the objects under prefix, in key order.
func (s *Store) List(ctx context.Context, prefix string, fn func(Object) bool) error {
	b, err := s.backend(ctx, prefix)
	if err != nil {
		return err
	}
	return b.List(ctx, prefix, fn)
}

// First returns the first object under prefix (ok false when there is none): the early check that
// credentials, bucket and prefix are right.
func (s *Store) First(ctx context.Context, prefix string) (obj Object, ok bool, err error) {
	err = s.List(ctx, prefix, func(o Object) bool { obj, ok = o, true; return false })
	return obj, ok, err
}

// Probe opens the object at loc and closes it at once: the early check of a location named
// directly (a shard), with the provider's error when it cannot be read.
func (s *Store) Probe(ctx context.Context, loc string) error {
	b, err := s.backend(ctx, loc)
	if err != nil {
		return err
	}
	body, _, err := b.Open(ctx, loc, 0, "")
	if err != nil {
		return err
	}
	return body.Close()
}

// Refusal reports whether err is the provider's answer that no retry or wait will change (access
// denied, wrong key, no such bucket): a configuration mistake.
func Refusal(err error) bool {
	var be *blob.Error
	return errors.As(err, &be) && be.Code != "" && be.Status != 0 && be.Status < 500 && be.Status != 429 && be.Status != 408
}

// Open returns the object at loc as a stream, pinned to version ("" pins it to what the first
// response serves), resuming a broken or stalled body with a ranged read.
func (s *Store) Open(ctx context.Context, loc, version string) io.ReadCloser {
	return &stream{store: s, ctx: ctx, url: loc, version: version, size: -1}
}

// ReadAll reads the object obj, whose listed size the caller already checked against its limit, in
// one allocation. An object that is not the listed length is one that changed.
func (s *Store) ReadAll(ctx context.Context, obj Object, limit int64) ([]byte, error) {
	rc := s.Open(ctx, obj.URL, obj.Version)
	defer rc.Close()
	if obj.Size < 0 {
		b, err := io.ReadAll(io.LimitReader(rc, limit+1))
		if err == nil && int64(len(b)) > limit {
			return nil, fmt.Errorf("%s: more than %d bytes", obj.URL, limit)
		}
		return b, err
	}
	buf := make([]byte, obj.Size)
	if _, err := io.ReadFull(rc, buf); err != nil {
		if err == io.ErrUnexpectedEOF || err == io.EOF {
			err = &blob.Error{URL: obj.URL, Op: "read", Code: "Changed", Changed: true, Message: fmt.Sprintf("shorter than the listed %d bytes", obj.Size)}
		}
		return nil, err
	}
	return buf, nil
}

// stream is one object read as a stream. A request that fails is retried by the provider's SDK
// (or, for the clients datago drives itself, here), after the wait a Retry-After asks for if any;
// a body that breaks, or stalls for longer than the policy's timeout, is resumed from the byte it
// reached with a ranged read pinned to the object's version, so a changed object is an error
// (blob.ErrChanged), never a splice. It gives up after MaxRetries consecutive attempts without
// progress.
type stream struct {
	store   *Store
	ctx     context.Context
	url     string
	version string
	size    int64

	body    io.ReadCloser
	cancel  context.CancelFunc
	timer   *time.Timer
	off     int64
	fails   int
	lastErr error
	eof     bool
}

func (st *stream) Read(p []byte) (int, error) {
	if st.eof {
		return 0, io.EOF
	}
	for {
		if st.body == nil {
			if err := st.connect(); err != nil {
				return 0, err
			}
		}
		n, err := st.body.Read(p)
		if n > 0 {
			st.off += int64(n)
			st.fails = 0
			st.timer.Reset(st.store.policy.Timeout)
		}
		if err == nil {
			return n, nil
		}
		if err == io.EOF && (st.size < 0 || st.off >= st.size) {
			st.closeBody()
			st.eof = true
			return n, io.EOF
		}
		stalled := !st.timer.Stop()
		st.closeBody()
		if st.ctx.Err() != nil {
			return n, st.ctx.Err()
		}
		switch {
		case stalled:
			err = fmt.Errorf("no data for %v", st.store.policy.Timeout)
		case err == io.EOF:
			err = fmt.Errorf("the body ended at byte %d of %d", st.off, st.size)
		}
		st.lastErr = err
		st.fails++
		if n > 0 {
			return n, nil // the next Read resumes
		}
	}
}

func (st *stream) connect() error {
	b, err := st.store.backend(st.ctx, st.url)
	if err != nil {
		return err
	}
	pol := st.store.policy
	for {
		if st.fails > pol.MaxRetries {
			return fmt.Errorf("%s: giving up after %d failed attempts at byte %d: %w", st.url, st.fails, st.off, st.lastErr)
		}
		if st.fails > 0 {
			if err := httpretry.Sleep(st.ctx, httpretry.Wait(pol.Backoff, st.fails, blob.RetryAfter(st.lastErr))); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithCancel(st.ctx)
		timer := time.AfterFunc(pol.Timeout, cancel)
		body, info, err := b.Open(ctx, st.url, st.off, st.version)
		if err != nil {
			timer.Stop()
			cancel()
			if st.ctx.Err() != nil {
				return st.ctx.Err()
			}
			if errors.Is(err, blob.ErrChanged) || !b.Retryable(err) {
				return err
			}
			st.lastErr = err
			st.fails++
			continue
		}
		if st.version == "" {
			st.version = info.Version
		}
		if st.size < 0 {
			st.size = info.Size
		} else if info.Size >= 0 && info.Size != st.size {
			body.Close()
			timer.Stop()
			cancel()
			return &blob.Error{URL: st.url, Op: "read", Code: "Changed", Changed: true,
				Message: fmt.Sprintf("length %d, then %d", st.size, info.Size)}
		}
		st.body, st.cancel, st.timer = body, cancel, timer
		return nil
	}
}

func (st *stream) closeBody() {
	if st.body != nil {
		st.timer.Stop()
		st.body.Close()
		st.cancel()
		st.body = nil
	}
}

// Close releases the connection.
func (st *stream) Close() error {
	st.closeBody()
	return nil
}
