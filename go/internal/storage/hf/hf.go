// Package hf is the storage backend of hf:// URLs, the Hugging Face Hub's dataset repositories:
// hf://datasets/<org>/<name>[@<revision>]/<path>. Prefixes are listed through the Hub's tree API
// (recursive, paginated by its Link header), files read through its resolve endpoint. The token
// (HF_TOKEN, else the file the Hub's own tools write) goes only to the Hub's host: a resolve that
// redirects to a storage host is followed without it. HF_ENDPOINT names another Hub.
package hf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/datago-dev/datago/internal/source/httpretry"
	"github.com/datago-dev/datago/internal/storage/blob"
)

// DefaultEndpoint is the Hub, unless HF_ENDPOINT says otherwise.
const DefaultEndpoint = "https://huggingface.co"

// Options are the transport settings the source gives every backend.
type Options struct {
	Timeout    time.Duration // connecting and waiting for response headers
	MaxRetries int           // tree pages asked again after a transient failure
	Backoff    time.Duration // wait before the first of them, doubled at each one
	Conns      int           // idle connections kept per host
}

// Backend reads hf:// URLs.
type Backend struct {
	o        Options
	endpoint *url.URL
	token    string
	client   *http.Client
}

// New reads HF_ENDPOINT and the token; it sends nothing.
func New(o Options) (*Backend, error) {
	ep := DefaultEndpoint
	if v := os.Getenv("HF_ENDPOINT"); v != "" {
		ep = strings.TrimRight(v, "/")
	}
	u, err := url.Parse(ep)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("HF_ENDPOINT %q is not an http(s) URL", httpretry.RedactURL(ep))
	}
	b := &Backend{o: o, endpoint: u, token: token()}
	b.client = httpretry.NewClient(httpretry.Options{ConnectTimeout: o.Timeout, HeaderTimeout: o.Timeout,
		IdlePerHost: max(2, o.Conns), Raw: true})
	b.client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		// net/http keeps Authorization on a redirect to a subdomain (cdn-lfs.huggingface.co): the
		// token is for the Hub only.
		if req.URL.Host != b.endpoint.Host || req.URL.Scheme != b.endpoint.Scheme {
			req.Header.Del("Authorization")
		}
		return nil
	}
	return b, nil
}

// token is HF_TOKEN, else the token file (HF_TOKEN_PATH, $HF_HOME/token, ~/.cache/huggingface/token).
func token() string {
	if t := strings.TrimSpace(os.Getenv("HF_TOKEN")); t != "" {
		return t
	}
	path := os.Getenv("HF_TOKEN_PATH")
	if path == "" {
		home := os.Getenv("HF_HOME")
		if home == "" {
			cache := os.Getenv("XDG_CACHE_HOME")
			if cache == "" {
				if h, err := os.UserHomeDir(); err == nil {
					cache = filepath.Join(h, ".cache")
				}
			}
			home = filepath.Join(cache, "huggingface")
		}
		path = filepath.Join(home, "token")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Location is a parsed hf:// URL.
type Location struct {
	Repo     string // org/name
	Revision string // "" for main; unescaped (refs/pr/1)
	Path     string // inside the repository, without a leading "/"
}

// Parse reads hf://datasets/<org>/<name>[@<revision>]/<path>.
func Parse(u string) (Location, error) {
	rest, ok := strings.CutPrefix(u, "hf://")
	if !ok {
		return Location{}, fmt.Errorf("%q is not an hf:// URL", u)
	}
	kind, rest, _ := strings.Cut(rest, "/")
	if kind != "datasets" {
		return Location{}, fmt.Errorf("%q: only dataset repositories are read (hf://datasets/<org>/<name>/<path>)", u)
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return Location{}, fmt.Errorf("%q names no repository (hf://datasets/<org>/<name>/<path>)", u)
	}
	name, rev, _ := strings.Cut(parts[1], "@")
	// A revision with a slash (refs/pr/1) is written escaped (refs%2Fpr%2F1), as the Hub's URLs do.
	if r, err := url.PathUnescape(rev); err == nil {
		rev = r
	}
	loc := Location{Repo: parts[0] + "/" + name, Revision: rev}
	if strings.Contains(parts[1], "@") && rev == "" {
		return Location{}, fmt.Errorf("%q: empty revision after @", u)
	}
	if len(parts) == 3 {
		loc.Path = parts[2]
	}
	return loc, nil
}

func (l Location) rev() string {
	if l.Revision == "" {
		return "main"
	}
	return l.Revision
}

// url is the hf:// URL of path in l's repository and revision.
func (l Location) url(path string) string {
	repo := l.Repo
	if l.Revision != "" {
		repo += "@" + url.PathEscape(l.Revision)
	}
	return "hf://datasets/" + repo + "/" + path
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

func (b *Backend) get(ctx context.Context, u string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if b.token != "" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, errors.New(httpretry.Redact(err.Error(), b.token))
	}
	return resp, nil
}

// entry is one item of the tree API.
type entry struct {
	Type string `json:"type"`
	Path string `json:"path"`
	Size int64  `json:"size"`
	OID  string `json:"oid"`
	LFS  *struct {
		OID  string `json:"oid"`
		Size int64  `json:"size"`
	} `json:"lfs"`
}

// List pages through the tree API, recursively, under the prefix (a directory of the repository).
func (b *Backend) List(ctx context.Context, prefix string, fn func(blob.Object) bool) error {
	loc, err := Parse(prefix)
	if err != nil {
		return err
	}
	dir := strings.Trim(loc.Path, "/")
	next := fmt.Sprintf("%s/api/datasets/%s/tree/%s", b.endpoint, loc.Repo, url.PathEscape(loc.rev()))
	if dir != "" {
		next += "/" + escapePath(dir)
	}
	next += "?recursive=true&expand=false"
	for next != "" {
		page, link, err := b.page(ctx, next, prefix)
		if err != nil {
			return err
		}
		for _, e := range page {
			if e.Type != "file" {
				continue
			}
			o := blob.Object{URL: loc.url(e.Path), Key: strings.TrimPrefix(strings.TrimPrefix(e.Path, dir), "/"), Size: e.Size, Version: e.OID}
			if e.LFS != nil {
				o.Version = e.LFS.OID
			}
			if !fn(o) {
				return nil
			}
		}
		next = link
		if next != "" && !strings.HasPrefix(next, b.endpoint.String()) {
			return &blob.Error{Provider: "hf", URL: prefix, Op: "list", Err: errors.New("a tree page links outside the Hub")}
		}
	}
	return nil
}

// page fetches one tree page and the link to the next, again after a transient failure (after the
// wait a Retry-After asks for).
func (b *Backend) page(ctx context.Context, u, prefix string) ([]entry, string, error) {
	for attempt := 1; ; attempt++ {
		page, next, err := b.pageOnce(ctx, u, prefix)
		if err == nil || ctx.Err() != nil || attempt > b.o.MaxRetries || !b.Retryable(err) {
			return page, next, err
		}
		wait := httpretry.Wait(b.o.Backoff, attempt, blob.RetryAfter(err))
		if err := httpretry.Sleep(ctx, wait); err != nil {
			return nil, "", err
		}
	}
}

func (b *Backend) pageOnce(ctx context.Context, u, prefix string) ([]entry, string, error) {
	resp, err := b.get(ctx, u, nil)
	if err != nil {
		return nil, "", &blob.Error{Provider: "hf", URL: prefix, Op: "list", Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", b.fail(resp, "list", prefix)
	}
	var page []entry
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&page); err != nil {
		return nil, "", &blob.Error{Provider: "hf", URL: prefix, Op: "list", Err: fmt.Errorf("tree page: %w", err)}
	}
	return page, nextLink(resp.Header.Get("Link")), nil
}

// nextLink reads the rel="next" target of a Link header.
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		target, params, ok := strings.Cut(part, ";")
		if ok && strings.Contains(params, `rel="next"`) {
			return strings.Trim(strings.TrimSpace(target), "<>")
		}
	}
	return ""
}

// Open reads through the resolve endpoint, ranged from off; the content's ETag (X-Linked-Etag when
// the Hub redirects) must be version when version is set.
func (b *Backend) Open(ctx context.Context, u string, off int64, version string) (io.ReadCloser, blob.Info, error) {
	loc, err := Parse(u)
	if err != nil {
		return nil, blob.Info{}, err
	}
	target := fmt.Sprintf("%s/datasets/%s/resolve/%s/%s", b.endpoint, loc.Repo, url.PathEscape(loc.rev()), escapePath(loc.Path))
	h := http.Header{}
	if off > 0 {
		h.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := b.get(ctx, target, h)
	if err != nil {
		return nil, blob.Info{}, &blob.Error{Provider: "hf", URL: u, Op: "read", Err: err}
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
		return nil, blob.Info{}, b.fail(resp, "read", u)
	}
	if off > 0 && resp.StatusCode != http.StatusPartialContent {
		resp.Body.Close()
		return nil, blob.Info{}, &blob.Error{Provider: "hf", URL: u, Op: "read", Err: errors.New("the server ignored Range")}
	}
	etag := resp.Header.Get("X-Linked-Etag")
	if etag == "" {
		etag = resp.Header.Get("ETag")
	}
	etag = strings.Trim(strings.TrimPrefix(etag, "W/"), `"`)
	if version != "" && etag != "" && etag != version {
		resp.Body.Close()
		return nil, blob.Info{}, &blob.Error{Provider: "hf", URL: u, Op: "read", Code: "Changed", Changed: true,
			Message: fmt.Sprintf("ETag %s, listed %s", etag, version)}
	}
	info := blob.Info{Version: etag}
	info.Size = blob.ObjectSize(resp, off)
	return resp.Body, info, nil
}

// Retryable: connection errors, 5xx, 408 and 429.
func (b *Backend) Retryable(err error) bool {
	var be *blob.Error
	if errors.As(err, &be) && be.Status != 0 {
		return httpretry.Transient(be.Status)
	}
	return !errors.As(err, &be) || be.Code == ""
}

// fail turns an error response into a *blob.Error with the Hub's X-Error-Code and X-Error-Message.
func (b *Backend) fail(resp *http.Response, op, u string) error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	e := &blob.Error{Provider: "hf", URL: u, Op: op, Status: resp.StatusCode,
		Code: resp.Header.Get("X-Error-Code"), Message: resp.Header.Get("X-Error-Message"), RetryAfter: httpretry.RetryAfter(resp.Header)}
	if e.Code == "" {
		e.Code = http.StatusText(resp.StatusCode)
	}
	if e.Message == "" {
		var j struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &j) == nil && j.Error != "" {
			e.Message = j.Error
		} else {
			e.Message = httpretry.Truncate(strings.TrimSpace(string(body)), 200)
		}
	}
	e.Message = httpretry.Redact(e.Message, b.token)
	// A missing file; a missing repository or revision is a configuration mistake.
	e.NotFound = resp.StatusCode == http.StatusNotFound && (e.Code == "EntryNotFound" || resp.Header.Get("X-Error-Code") == "")
	return e
}
