// Package dataroom is the "db" source: the HTTP API of a dataroom server, read page by page
// (cursor pages, or random pages), with the files of each result (image, masks, additional images,
// latents) downloaded by the pipeline's fetchers.
package dataroom

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/datago-dev/datago/internal/faults"
	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/source/httpretry"
)

// Defaults and limits (the server's, where it has them).
const (
	defaultPageSize   = 512
	maxPageSize       = 2000 // API_MAX_PAGE_SIZE of the server
	maxPartitions     = 48   // shards of the server's index: partitions_count <= 48
	defaultTimeout    = 30 * time.Second
	defaultMaxRetries = 5
	defaultBackoff    = 200 * time.Millisecond
	prefetchPages     = 2  // pages requested ahead of the one being dispatched
	maxEmptyRandom    = 10 // consecutive empty random pages before giving up
	maxErrorBody      = 2048
)

// unset marks an integer filter of Config that is not sent.
const unset = -1

// Config is source_config for "source_type": "db", the HTTP API of a dataroom server.
// List fields are sent as comma-separated values; empty lists and unset integers are not sent.
type Config struct {
	APIURL string // base of the API, ending in "/", e.g. http://host:8000/api/
	APIKey string // token, sent as "Authorization: Token <key>"; never printed

	PageSize  int
	Rank      int
	WorldSize int // >= 2: partitions_count=WorldSize, partition=Rank

	Sources, SourcesNe               []string
	Tags, TagsNe                     []string
	TagsAll, TagsNeAll               []string // has every one / not every one of the tags
	TagsEmpty                        *bool    // nil: no filter; true: no tags; false: some tags
	Attributes                       []string // "name[__cmp]:value" filters, sent as the API's attributes
	HasAttributes, LacksAttributes   []string
	HasMasks, LacksMasks             []string
	HasLatents, LacksLatents         []string
	ReturnLatents                    []string // downloaded: these, HasLatents and HasMasks
	RequireImages, RequireEmbeddings bool
	ReturnDuplicateState             bool
	MinShortEdge, MaxShortEdge       int // unset, or >= 0
	MinPixelCount, MaxPixelCount     int
	DuplicateState                   int // unset, 0 (unprocessed, sent as "None"), 1 or 2
	RandomSampling                   bool

	Timeout    time.Duration // per HTTP request, body included
	MaxRetries int           // retries of a failed request (so MaxRetries+1 attempts)
	Backoff    time.Duration // wait before the first retry; doubles at each one, with jitter
}

// String shows the configuration with the API key redacted, so printing a config never leaks it.
func (c Config) String() string {
	c.APIKey = httpretry.RedactKey(c.APIKey)
	type plain Config // no String method: no recursion
	return fmt.Sprintf("%+v", plain(c))
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// Source reads images from a dataroom server: GET {api_url}images/ (cursor pages) or
// images/random/, then the files of every result (image, masks, additional images, latents).
type Source struct {
	cfg      Config
	maxBody  int64 // a larger response body (page or file) is refused
	goFn     func(name string, fn func())
	points   faults.Points
	client   *http.Client
	pageURL  *url.URL // first page: endpoint and query, without cursor
	query    []param
	wantLats map[string]bool // latent types to download; nil: all those the server returns
}

// Unreplayable: the server's random sampling does not repeat.
func (d *Source) Unreplayable() string {
	if d.cfg.RandomSampling {
		return "random_sampling pages are drawn at random by the server"
	}
	return ""
}

// Open returns the source of c.
func (c Config) Open(common source.Common) (source.Source, error) { return newSource(c, common) }

// newSource returns the source of a parsed cfg: every value was checked by Parse.
func newSource(cfg Config, common source.Common) (*Source, error) {
	base, err := parseAPIURL(cfg.APIURL)
	if err != nil {
		return nil, err
	}
	endpoint := "images/"
	if cfg.RandomSampling {
		endpoint = "images/random/"
	}
	// Every fetcher may download fileParallelism files at once, and the pager runs ahead.
	idle := max(common.Fetchers, 1)*fileParallelism + prefetchPages + 2
	d := &Source{cfg: cfg, maxBody: common.MaxFileBytes, goFn: common.Go, points: faults.FromEnv(),
		client: httpretry.NewClient(httpretry.Options{
			RequestTimeout: cfg.Timeout,
			ConnectTimeout: min(cfg.Timeout, 30*time.Second),
			IdlePerHost:    idle,
			MaxRedirects:   5, // never an endless chain with the token
		})}
	d.pageURL = base.ResolveReference(&url.URL{Path: endpoint})
	d.query = queryOf(cfg)
	d.pageURL.RawQuery = encodeQuery(d.query, "")
	if lats := cfg.returnLatents(); len(lats) > 0 {
		d.wantLats = map[string]bool{}
		for _, t := range lats {
			d.wantLats[t] = true
		}
	}
	return d, nil
}

// parseAPIURL checks an api_url and returns it with a trailing slash.
func parseAPIURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("must be an http:// or https:// URL, got %q", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("has no host: %q", s)
	}
	if u.User != nil {
		return nil, errors.New("must not contain user credentials (use api_key)")
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
	}
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// FirstPageURL is the URL of the first page request (for tests and logs).
func (d *Source) FirstPageURL() string { return d.pageURL.String() }

// returnLatents is the union of return_latents, has_latents and has_masks, as in the Rust loader:
// a type the listing filters on is always delivered.
func (c *Config) returnLatents() []string {
	all := append(append([]string(nil), c.ReturnLatents...), c.HasLatents...)
	return dedupe(append(all, c.HasMasks...))
}

func dedupe(list []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range list {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

type param struct{ key, value string }

// queryOf returns the query parameters of a page request for cfg, in the order they are sent:
// only the fields the samples need, and only the filters that are set.
func queryOf(cfg Config) []param {
	fields := []string{"attributes"}
	if cfg.RequireImages {
		fields = append(fields, "image_direct_url")
	}
	lats := cfg.returnLatents()
	if len(lats) > 0 {
		fields = append(fields, "latents")
	}
	fields = append(fields, "source", "tags")
	if cfg.RequireEmbeddings {
		fields = append(fields, "coca_embedding")
	}
	if cfg.ReturnDuplicateState {
		fields = append(fields, "duplicate_state")
	}
	var q []param
	add := func(k, v string) { q = append(q, param{k, v}) }
	list := func(k string, v []string) {
		if len(v) > 0 {
			add(k, strings.Join(v, ","))
		}
	}
	num := func(k string, v int) {
		if v != unset {
			add(k, strconv.Itoa(v))
		}
	}
	add("fields", strings.Join(fields, ","))
	add("page_size", strconv.Itoa(cfg.PageSize))
	list("return_latents", lats)
	list("sources", cfg.Sources)
	list("sources__ne", cfg.SourcesNe)
	list("tags", cfg.Tags)
	list("tags__ne", cfg.TagsNe)
	list("tags__all", cfg.TagsAll)
	list("tags__ne_all", cfg.TagsNeAll)
	if cfg.TagsEmpty != nil {
		add("tags__empty", strconv.FormatBool(*cfg.TagsEmpty))
	}
	list("attributes", cfg.Attributes)
	list("has_attributes", cfg.HasAttributes)
	list("lacks_attributes", cfg.LacksAttributes)
	list("has_masks", cfg.HasMasks)
	list("lacks_masks", cfg.LacksMasks)
	list("has_latents", cfg.HasLatents)
	list("lacks_latents", cfg.LacksLatents)
	num("short_edge__gte", cfg.MinShortEdge)
	num("short_edge__lte", cfg.MaxShortEdge)
	num("pixel_count__gte", cfg.MinPixelCount)
	num("pixel_count__lte", cfg.MaxPixelCount)
	switch cfg.DuplicateState {
	case unset:
	case 0:
		add("duplicate_state", "None")
	default:
		add("duplicate_state", strconv.Itoa(cfg.DuplicateState))
	}
	if cfg.RequireEmbeddings {
		add("coca_embedding__empty", "false")
	}
	if cfg.WorldSize >= 2 {
		add("partitions_count", strconv.Itoa(cfg.WorldSize))
		add("partition", strconv.Itoa(cfg.Rank))
	}
	return q
}

// encodeQuery writes q (plus cursor when not empty) as a query string. Commas stay
// literal (they separate list values and are valid in a query), everything else is escaped.
func encodeQuery(q []param, cursor string) string {
	var b strings.Builder
	write := func(k, v string) {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(k))
		b.WriteByte('=')
		b.WriteString(strings.ReplaceAll(url.QueryEscape(v), "%2C", ","))
	}
	for _, p := range q {
		write(p.key, p.value)
	}
	if cursor != "" {
		write("cursor", cursor)
	}
	return b.String()
}

// pageURLWith is the first page URL of query with cursor set.
func (d *Source) pageURLWith(query []param, cursor string) string {
	u := *d.pageURL
	u.RawQuery = encodeQuery(query, cursor)
	return u.String()
}

type pageResult struct {
	page *Page
	err  error
}

// List requests the pages on a goroutine of its own, prefetchPages ahead of the one whose
// items are being emitted, and emits every result of each page once.
func (d *Source) List(ctx context.Context, emit func(source.Item) bool, skip func(id, reason string, err error)) error {
	return d.records(ctx, d.goFn, d.query, emit, skip)
}

// records is List over the pages of query, its pager started by goFn.
func (d *Source) records(ctx context.Context, goFn func(string, func()), query []param, emit func(source.Item) bool, skip func(id, reason string, err error)) error {
	ctx, cancel := context.WithCancel(ctx)
	pages := make(chan pageResult, prefetchPages)
	var wg sync.WaitGroup
	wg.Add(1)
	goFn("dataroom pager", func() {
		defer wg.Done()
		defer close(pages)
		d.pager(ctx, pages, query)
	})
	defer func() {
		cancel()
		for range pages { // unblock the pager, then wait for it
		}
		wg.Wait()
	}()

	var prevIDs, curIDs map[string]bool
	for pr := range pages {
		if pr.err != nil {
			return pr.err
		}
		if !d.cfg.RandomSampling {
			prevIDs, curIDs = curIDs, make(map[string]bool, len(pr.page.Results))
		}
		for i := range pr.page.Results {
			rec := &pr.page.Results[i]
			if rec.Err != nil {
				skip(rec.ID, source.ReasonBadRecord, rec.Err)
				continue
			}
			if !d.cfg.RandomSampling {
				if prevIDs[rec.ID] || curIDs[rec.ID] {
					skip(rec.ID, source.ReasonDuplicate, fmt.Errorf("dataroom: id %q returned twice by the server", rec.ID))
					continue
				}
				curIDs[rec.ID] = true
			}
			if d.cfg.RequireImages && rec.ImageURL == "" {
				skip(rec.ID, source.ReasonBadRecord, errors.New("dataroom: result has no image_direct_url"))
				continue
			}
			if d.cfg.RequireEmbeddings && rec.Embedding == nil {
				skip(rec.ID, source.ReasonBadRecord, errors.New("dataroom: result has no coca_embedding"))
				continue
			}
			if !emit(source.Item{ID: rec.ID, Path: rec.ImageURL, Ref: rec}) {
				return nil
			}
		}
	}
	return nil
}

// pager requests pages in order and sends each one to out once; it sends an error and stops when a
// page cannot be had. List mode follows the cursor of `next` until next is null or a page is empty;
// random mode requests random pages until the context is cancelled (the pipeline's limit).
func (d *Source) pager(ctx context.Context, out chan<- pageResult, query []param) {
	send := func(r pageResult) bool {
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	u := d.pageURLWith(query, "")
	cursor, empties := "", 0
	for ctx.Err() == nil {
		d.points.Hit("dataroom.pager")
		page, err := d.getPage(ctx, u)
		if err != nil {
			if ctx.Err() == nil {
				send(pageResult{err: err})
			}
			return
		}
		if len(page.Results) > 0 && !send(pageResult{page: page}) {
			return
		}
		if d.cfg.RandomSampling {
			if len(page.Results) > 0 {
				empties = 0
				continue
			}
			if empties++; empties >= maxEmptyRandom {
				send(pageResult{err: fmt.Errorf("dataroom: %d random pages in a row were empty (GET %s): "+
					"the filters match nothing, or too few images for the server's hash-prefix sampling", empties, u)})
				return
			}
			continue
		}
		if page.Next == nil || len(page.Results) == 0 {
			return // the terminal page: {"next": null, "results": []}
		}
		next, err := cursorOf(*page.Next)
		if err != nil {
			send(pageResult{err: fmt.Errorf("dataroom: GET %s: %w", u, err)})
			return
		}
		if next == cursor {
			send(pageResult{err: fmt.Errorf("dataroom: GET %s: `next` does not advance the cursor (%q): the server would loop", u, next)})
			return
		}
		cursor, u = next, d.pageURLWith(query, next)
	}
}

// cursorOf reads the cursor of a `next` URL (absolute or relative). The client does not request `next`
// itself: it sends its own page URL with that cursor, so the token never goes to another origin and the
// parameters stay those of the first page, whatever host or port the server wrote into `next`.
func cursorOf(next string) (string, error) {
	u, err := url.Parse(next)
	if err != nil {
		return "", fmt.Errorf("`next` is not a URL: %v", err)
	}
	c := u.Query().Get("cursor")
	if c == "" {
		return "", fmt.Errorf("`next` has no cursor: %q", next)
	}
	return c, nil
}
