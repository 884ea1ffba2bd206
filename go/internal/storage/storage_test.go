package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/storage/blob"
)

// flaky is a Backend over objects in memory whose bodies break after cut bytes, for the stream's
// resume logic (the providers' own IO is tested against their servers, from Python).
type flaky struct {
	mu      sync.Mutex
	data    map[string][]byte
	version map[string]string
	cut     int // each body ends after this many bytes (0: never)
	opens   []int64
}

func (f *flaky) List(context.Context, string, func(blob.Object) bool) error { return nil }

func (f *flaky) Open(_ context.Context, u string, off int64, version string) (io.ReadCloser, blob.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opens = append(f.opens, off)
	d, ok := f.data[u]
	if !ok {
		return nil, blob.Info{}, &blob.Error{URL: u, Op: "read", Code: "NoSuchKey", Status: 404, NotFound: true}
	}
	if version != "" && version != f.version[u] {
		return nil, blob.Info{}, &blob.Error{URL: u, Op: "read", Code: "PreconditionFailed", Status: 412, Changed: true}
	}
	rest := d[off:]
	if f.cut > 0 && len(rest) > f.cut {
		rest = rest[:f.cut]
	}
	return io.NopCloser(bytes.NewReader(rest)), blob.Info{Size: int64(len(d)), Version: f.version[u]}, nil
}

func (f *flaky) Retryable(err error) bool {
	var be *blob.Error
	return !errors.As(err, &be) || be.Status >= 500
}

func testStore(b blob.Backend) *Store {
	s := New(Config{}, Policy{Timeout: time.Second, MaxRetries: 2, Backoff: time.Millisecond, Conns: 1})
	s.testBackend = b
	return s
}

func TestStreamResumesABrokenBodyFromTheByteItReached(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 100)
	f := &flaky{data: map[string][]byte{"s3://b/k": data}, version: map[string]string{"s3://b/k": `"v1"`}, cut: 300}
	got, err := io.ReadAll(testStore(f).Open(context.Background(), "s3://b/k", ""))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("got %d bytes, %v; want %d", len(got), err, len(data))
	}
	if want := []int64{0, 300, 600, 900}; fmt.Sprint(f.opens) != fmt.Sprint(want) {
		t.Errorf("opened at %v, want %v", f.opens, want)
	}
}

func TestStreamRefusesToSpliceAChangedObject(t *testing.T) {
	f := &flaky{data: map[string][]byte{"s3://b/k": make([]byte, 1000)}, version: map[string]string{"s3://b/k": `"v1"`}, cut: 400}
	rc := testStore(f).Open(context.Background(), "s3://b/k", "")
	buf := make([]byte, 400)
	if _, err := io.ReadFull(rc, buf); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.version["s3://b/k"] = `"v2"` // rewritten under the reader
	f.mu.Unlock()
	_, err := io.ReadAll(rc)
	if !errors.Is(err, ErrChanged) {
		t.Fatalf("got %v, want ErrChanged", err)
	}
}

func TestReadAllPinsTheListedVersionAndReportsAMissingObject(t *testing.T) {
	f := &flaky{data: map[string][]byte{"s3://b/k": []byte("abc")}, version: map[string]string{"s3://b/k": `"v2"`}}
	s := testStore(f)
	if _, err := s.ReadAll(context.Background(), Object{URL: "s3://b/k", Size: 3, Version: `"v1"`}, 10); !errors.Is(err, ErrChanged) {
		t.Errorf("stale listing: got %v, want ErrChanged", err)
	}
	b, err := s.ReadAll(context.Background(), Object{URL: "s3://b/k", Size: 3, Version: `"v2"`}, 10)
	if err != nil || string(b) != "abc" {
		t.Errorf("got %q, %v", b, err)
	}
	_, err = s.ReadAll(context.Background(), Object{URL: "s3://b/gone", Size: 3}, 10)
	var be *blob.Error
	if !errors.Is(err, ErrNotFound) || !errors.As(err, &be) || be.SkipReason() != "not_found" {
		t.Errorf("missing: got %v", err)
	}
}

func TestStreamGivesUpAfterMaxRetriesWithoutProgress(t *testing.T) {
	f := &flaky{data: map[string][]byte{}, version: map[string]string{}}
	failing := &failingOpen{flaky: f}
	_, err := io.ReadAll(testStore(failing).Open(context.Background(), "s3://b/k", ""))
	if err == nil || !strings.Contains(err.Error(), "giving up after 3 failed attempts") || failing.n != 3 {
		t.Fatalf("got %v after %d attempts", err, failing.n)
	}
}

type failingOpen struct {
	*flaky
	n int
}

func (f *failingOpen) Open(context.Context, string, int64, string) (io.ReadCloser, blob.Info, error) {
	f.n++
	return nil, blob.Info{}, &blob.Error{URL: "s3://b/k", Op: "read", Code: "InternalError", Status: 500}
}

func TestParseAndCheck(t *testing.T) {
	for _, tc := range []struct{ loc, err string }{
		{"s3://bucket/key", ""},
		{"s3://bucket", ""},
		{"s3:///key", "names no bucket"},
		{"S3://bucket/key", "lower case"},
	} {
		err := Check(tc.loc)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("Check(%q) = %v, want %q", tc.loc, err, tc.err)
		}
	}
	if Remote("/data/x") || Remote("https://h/x") || !Remote("s3://b/x") {
		t.Error("Remote")
	}
	for body, key := range map[string]string{
		`{"storage": {"endpoint_url": "ftp://h"}}`:               "source_config.storage.endpoint_url",
		`{"storage": {"endpoint_url": "http://u:p@h"}}`:          "source_config.storage.endpoint_url",
		`{"storage": {"path_style": 1}}`:                         "source_config.storage.path_style",
		`{"storage": {"profile": 3}}`:                            "source_config.storage.profile",
		`{"storage": {"endpoint": "http://h"}}`:                  "source_config.storage.endpoint",
		`{"storage": {"region": "eu-west-1", "anonymus": true}}`: "source_config.storage.anonymus",
	} {
		v, _ := confread.Decode([]byte(body), "source_config")
		r := &confread.Reader{}
		Parse(r, confread.NewObject("source_config", v.(map[string]any)))
		if r.Err() == nil || r.Err().Key != key {
			t.Errorf("%s: got %v, want an error naming %s", body, r.Err(), key)
		}
		if r.Err() != nil && strings.Contains(r.Err().Error(), "u:p") {
			t.Errorf("%s: the error shows the URL's credentials: %v", body, r.Err())
		}
	}
	v, _ := confread.Decode([]byte(`{"storage": {"endpoint_url": "http://127.0.0.1:9000", "region": "auto", "path_style": true, "anonymous": true, "profile": "p"}}`), "source_config")
	r := &confread.Reader{}
	c := Parse(r, confread.NewObject("source_config", v.(map[string]any)))
	if r.Err() != nil || c.S3.EndpointURL != "http://127.0.0.1:9000" || c.S3.Region != "auto" || !c.S3.PathStyle || !c.S3.Anonymous || c.S3.Profile != "p" {
		t.Errorf("got %+v, %v", c, r.Err())
	}
}
