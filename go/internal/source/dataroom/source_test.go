package dataroom

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/faults"
	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/source/httpretry"
)

const testKey = "0123456789abcdef0123456789abcdef0123wxyz"

// fakeDataroom serves ids "img000".."imgNNN" in cursor pages, with files under /files/.
type fakeDataroom struct {
	srv      *httptest.Server
	ids      []string
	pageReqs atomic.Int64
	fileReqs atomic.Int64

	mu       sync.Mutex
	queries  []string
	fileAuth []string
	// hooks: return true when they wrote the response.
	onPage func(n int64, w http.ResponseWriter, r *http.Request) bool
	onFile func(n int64, w http.ResponseWriter, r *http.Request) bool
	// latents served with each record
	latents func(id string) []map[string]any
}

func newFakeDataroom(t *testing.T, n int) *fakeDataroom {
	f := &fakeDataroom{}
	for i := 0; i < n; i++ {
		f.ids = append(f.ids, fmt.Sprintf("img%03d", i))
	}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeDataroom) serve(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/files/") {
		n := f.fileReqs.Add(1)
		f.mu.Lock()
		f.fileAuth = append(f.fileAuth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		if f.onFile != nil && f.onFile(n, w, r) {
			return
		}
		fmt.Fprintf(w, "bytes of %s", r.URL.Path)
		return
	}
	n := f.pageReqs.Add(1)
	f.mu.Lock()
	f.queries = append(f.queries, r.URL.RawQuery)
	f.mu.Unlock()
	if r.Header.Get("Authorization") != "Token "+testKey {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"detail":"Invalid token."}`)
		return
	}
	if f.onPage != nil && f.onPage(n, w, r) {
		return
	}
	json.NewEncoder(w).Encode(f.page(r))
}

// page is the page the server answers r with.
func (f *fakeDataroom) page(r *http.Request) map[string]any {
	q := r.URL.Query()
	size, _ := strconv.Atoi(q.Get("page_size"))
	cursor := q.Get("cursor")
	results := []map[string]any{}
	for _, id := range f.ids {
		if id > cursor && len(results) < size {
			rec := map[string]any{
				"id": id, "source": "src", "attributes": map[string]any{"n": 1},
				"image_direct_url": f.srv.URL + "/files/" + id + "/original.jpg?sig=SECRET",
				"tags":             []string{"a"},
			}
			if f.latents != nil {
				rec["latents"] = f.latents(id)
			}
			results = append(results, rec)
		}
	}
	var next any
	if len(results) > 0 {
		q.Set("cursor", results[len(results)-1]["id"].(string))
		next = "http://" + r.Host + r.URL.Path + "?" + q.Encode()
	}
	return map[string]any{"next": next, "results": results}
}

func (f *fakeDataroom) config() Config {
	return Config{
		APIURL: f.srv.URL + "/api", APIKey: testKey, PageSize: 4, WorldSize: 1, RequireImages: true,
		MinShortEdge: unset, MaxShortEdge: unset, MinPixelCount: unset, MaxPixelCount: unset,
		DuplicateState: unset, Timeout: 5 * time.Second, MaxRetries: 3, Backoff: time.Millisecond,
	}
}

type listResult struct {
	ids     []string
	skipped map[string]int
	err     error
}

func listAll(t *testing.T, d *Source) listResult {
	t.Helper()
	res := listResult{skipped: map[string]int{}}
	var mu sync.Mutex
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res.err = d.List(ctx, func(it source.Item) bool {
		res.ids = append(res.ids, it.ID)
		return true
	}, func(id, reason string, err error) {
		mu.Lock()
		res.skipped[reason]++
		mu.Unlock()
	})
	if ctx.Err() != nil {
		t.Fatal("List hung")
	}
	return res
}

// testCommon is what the pipeline would hand the source: plain goroutines, the default limit.
func testCommon() source.Common {
	return source.Common{MaxFileBytes: 256 << 20, Fetchers: 4, Go: func(_ string, fn func()) { go fn() }}
}

func mustDataroom(t *testing.T, cfg Config) *Source {
	t.Helper()
	d, err := newSource(cfg, testCommon())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDataroomEveryImageOnceAndTerminalPage(t *testing.T) {
	f := newFakeDataroom(t, 10)
	res := listAll(t, mustDataroom(t, f.config()))
	if res.err != nil {
		t.Fatal(res.err)
	}
	if strings.Join(res.ids, ",") != strings.Join(f.ids, ",") {
		t.Fatalf("ids %v, want %v", res.ids, f.ids)
	}
	// 4+4+2, then the terminal empty page.
	if n := f.pageReqs.Load(); n != 4 {
		t.Fatalf("%d page requests, want 4", n)
	}
	if got := f.queries[3]; !strings.HasSuffix(got, "&cursor=img009") {
		t.Fatalf("last query %q", got)
	}
}

func TestDataroomQueryFullConfig(t *testing.T) {
	cfg := Config{
		APIURL: "http://h/api/", APIKey: testKey, PageSize: 100, Rank: 1, WorldSize: 4, RequireImages: true,
		Sources: []string{"a", "b c"}, SourcesNe: []string{"x"}, Tags: []string{"t1", "t2"}, TagsNe: []string{"t3"},
		HasAttributes: []string{"h"}, LacksAttributes: []string{"l"}, HasMasks: []string{"segmentation_mask"},
		LacksMasks: []string{"m2"}, HasLatents: []string{"latent_vae", "masked_image"}, LacksLatents: []string{"z"},
		RequireEmbeddings: true, ReturnDuplicateState: true, MinShortEdge: 64, MaxShortEdge: 4096,
		MinPixelCount: 0, MaxPixelCount: 1 << 24, DuplicateState: 0,
	}
	got := encodeQuery(queryOf(cfg), "")
	want := "fields=attributes,image_direct_url,latents,source,tags,coca_embedding,duplicate_state&page_size=100" +
		"&return_latents=latent_vae,masked_image,segmentation_mask&sources=a,b+c&sources__ne=x&tags=t1,t2&tags__ne=t3" +
		"&has_attributes=h&lacks_attributes=l&has_masks=segmentation_mask&lacks_masks=m2" +
		"&has_latents=latent_vae,masked_image&lacks_latents=z&short_edge__gte=64&short_edge__lte=4096" +
		"&pixel_count__gte=0&pixel_count__lte=16777216&duplicate_state=None&coca_embedding__empty=false" +
		"&partitions_count=4&partition=1"
	if got != want {
		t.Fatalf("query\n got %s\nwant %s", got, want)
	}
	// The minimal config sends the fields, the page size and nothing else.
	min := Config{PageSize: 512, RequireImages: true, WorldSize: 1, MinShortEdge: unset, MaxShortEdge: unset,
		MinPixelCount: unset, MaxPixelCount: unset, DuplicateState: unset}
	if got := encodeQuery(queryOf(min), ""); got != "fields=attributes,image_direct_url,source,tags&page_size=512" {
		t.Fatalf("minimal query %s", got)
	}
	min.ReturnLatents, min.DuplicateState = []string{"only"}, 2
	if got := encodeQuery(queryOf(min), "c/1"); got != "fields=attributes,image_direct_url,latents,source,tags&page_size=512&return_latents=only&duplicate_state=2&cursor=c%2F1" {
		t.Fatalf("query %s", got)
	}
}

func TestDataroomAuthFailureIsFatalWithServerMessage(t *testing.T) {
	f := newFakeDataroom(t, 3)
	cfg := f.config()
	cfg.APIKey = "wrong-key-with-secret-part-9876"
	res := listAll(t, mustDataroom(t, cfg))
	var de *Error
	if !errors.As(res.err, &de) || de.Status != 403 || !strings.Contains(res.err.Error(), "Invalid token.") {
		t.Fatalf("err = %v", res.err)
	}
	if strings.Contains(res.err.Error(), "secret-part") {
		t.Fatalf("the key leaks: %v", res.err)
	}
	if f.pageReqs.Load() != 1 {
		t.Fatalf("a 403 was retried: %d requests", f.pageReqs.Load())
	}
}

func TestDataroomBadFilterMessage(t *testing.T) {
	f := newFakeDataroom(t, 3)
	f.onPage = func(n int64, w http.ResponseWriter, r *http.Request) bool {
		w.WriteHeader(400)
		fmt.Fprint(w, `["One or more tags do not exist"]`)
		return true
	}
	res := listAll(t, mustDataroom(t, f.config()))
	if res.err == nil || !strings.Contains(res.err.Error(), "HTTP 400 Bad Request: One or more tags do not exist") {
		t.Fatalf("err = %v", res.err)
	}
}

func TestDataroomTransientPageFailuresRetriedNeverTwice(t *testing.T) {
	for _, mode := range []string{"503", "429", "reset", "truncated", "badjson", "noresults", "slow"} {
		t.Run(mode, func(t *testing.T) {
			f := newFakeDataroom(t, 10)
			f.onPage = func(n int64, w http.ResponseWriter, r *http.Request) bool {
				if n != 2 && n != 3 { // the second page fails twice
					return false
				}
				switch mode {
				case "503", "429":
					code, _ := strconv.Atoi(mode)
					w.WriteHeader(code)
					fmt.Fprint(w, "<html><body>busy</body></html>")
				case "reset":
					conn, _, _ := w.(http.Hijacker).Hijack()
					conn.(*net.TCPConn).SetLinger(0)
					conn.Close()
				case "truncated":
					w.Header().Set("Content-Length", "1000")
					fmt.Fprint(w, `{"next": null, "results": [`)
					conn, buf, _ := w.(http.Hijacker).Hijack()
					buf.Flush()
					conn.Close()
				case "badjson":
					fmt.Fprint(w, `<html>oops</html>`)
				case "noresults":
					fmt.Fprint(w, `{"next": null}`)
				case "slow":
					time.Sleep(400 * time.Millisecond)
					return false
				}
				return true
			}
			cfg := f.config()
			cfg.Timeout = 200 * time.Millisecond
			res := listAll(t, mustDataroom(t, cfg))
			if res.err != nil {
				t.Fatal(res.err)
			}
			if strings.Join(res.ids, ",") != strings.Join(f.ids, ",") {
				t.Fatalf("ids %v", res.ids)
			}
		})
	}
}

func TestDataroomRetriesExhaustedIsAnError(t *testing.T) {
	f := newFakeDataroom(t, 10)
	f.onPage = func(n int64, w http.ResponseWriter, r *http.Request) bool {
		if n == 1 {
			return false
		}
		w.WriteHeader(502)
		return true
	}
	cfg := f.config()
	cfg.MaxRetries = 2
	res := listAll(t, mustDataroom(t, cfg))
	if res.err == nil || !strings.Contains(res.err.Error(), "HTTP 502") || !strings.Contains(res.err.Error(), "after 3 attempts") {
		t.Fatalf("err = %v", res.err)
	}
	if len(res.ids) != 4 || f.pageReqs.Load() != 4 {
		t.Fatalf("%d ids, %d requests", len(res.ids), f.pageReqs.Load())
	}
}

func TestDataroomNextIsReadForItsCursorOnly(t *testing.T) {
	// A next URL on a dead port, or relative: the client keeps its own URL and takes the cursor.
	for _, mode := range []string{"dead", "relative"} {
		t.Run(mode, func(t *testing.T) {
			f := newFakeDataroom(t, 7)
			f.onPage = func(n int64, w http.ResponseWriter, r *http.Request) bool {
				page := f.page(r)
				if next, ok := page["next"].(string); ok {
					u, _ := url.Parse(next)
					if mode == "dead" {
						u.Host = "127.0.0.1:1"
						page["next"] = u.String()
					} else {
						page["next"] = u.RequestURI()
					}
				}
				json.NewEncoder(w).Encode(page)
				return true
			}
			res := listAll(t, mustDataroom(t, f.config()))
			if res.err != nil || len(res.ids) != 7 {
				t.Fatalf("%v %v", res.ids, res.err)
			}
		})
	}
}

func TestDataroomLoopingServerStops(t *testing.T) {
	f := newFakeDataroom(t, 10)
	f.onPage = func(n int64, w http.ResponseWriter, r *http.Request) bool {
		// Always the first page, with a next pointing to the same cursor.
		fmt.Fprintf(w, `{"next": "http://%s/api/images/?cursor=img003", "results": [{"id": "img000", "image_direct_url": "http://x/f"}]}`, r.Host)
		return true
	}
	res := listAll(t, mustDataroom(t, f.config()))
	if res.err == nil || !strings.Contains(res.err.Error(), "does not advance") {
		t.Fatalf("err = %v", res.err)
	}
	if len(res.ids) != 1 || res.skipped[source.ReasonDuplicate] != 1 {
		t.Fatalf("ids %v skipped %v", res.ids, res.skipped)
	}
}

func TestDataroomBadRecordsSkipped(t *testing.T) {
	f := newFakeDataroom(t, 0)
	f.onPage = func(n int64, w http.ResponseWriter, r *http.Request) bool {
		if n > 1 {
			fmt.Fprint(w, `{"next": null, "results": []}`)
			return true
		}
		fmt.Fprintf(w, `{"next": "http://%s/api/images/?cursor=z", "results": [
			{"id": "ok", "source": "s", "attributes": {}, "image_direct_url": "http://x/1"},
			{"source": "s", "attributes": {}, "image_direct_url": "http://x/2"},
			{"id": "noimage", "attributes": {}},
			{"id": "badattrs", "attributes": [1], "image_direct_url": "http://x/3"},
			{"id": "badtags", "tags": "x", "image_direct_url": "http://x/3"},
			17,
			{"id": 42, "image_direct_url": "http://x/4"}
		]}`, r.Host)
		return true
	}
	res := listAll(t, mustDataroom(t, f.config()))
	if res.err != nil || strings.Join(res.ids, ",") != "ok,42" || res.skipped[source.ReasonBadRecord] != 5 {
		t.Fatalf("ids %v skipped %v err %v", res.ids, res.skipped, res.err)
	}
}

func TestDataroomRandomSamplingRepeatsPagesUntilCancelled(t *testing.T) {
	f := newFakeDataroom(t, 0)
	f.onPage = func(n int64, w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/images/random/") {
			w.WriteHeader(404)
			return true
		}
		fmt.Fprintf(w, `{"next": null, "results": [{"id": "r%d", "image_direct_url": "http://x/%d"}]}`, n, n)
		return true
	}
	cfg := f.config()
	cfg.RandomSampling = true
	d := mustDataroom(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	var ids []string
	err := d.List(ctx, func(it source.Item) bool {
		ids = append(ids, it.ID)
		if len(ids) == 5 {
			cancel()
		}
		return true
	}, func(string, string, error) {})
	if err != nil || len(ids) < 5 {
		t.Fatalf("%v %v", ids, err)
	}
	f.mu.Lock() // a cancelled prefetch may still be in the server's handler
	defer f.mu.Unlock()
	for _, q := range f.queries {
		if strings.Contains(q, "cursor") {
			t.Fatalf("random page with a cursor: %s", q)
		}
	}
}

func TestDataroomRandomSamplingGivesUpOnEmptyPages(t *testing.T) {
	f := newFakeDataroom(t, 0)
	cfg := f.config()
	cfg.RandomSampling = true
	res := listAll(t, mustDataroom(t, cfg))
	if res.err == nil || !strings.Contains(res.err.Error(), "random pages in a row were empty") {
		t.Fatalf("err = %v", res.err)
	}
}

func fetchOne(t *testing.T, f *fakeDataroom, cfg Config) (*source.Raw, error) {
	t.Helper()
	d := mustDataroom(t, cfg)
	var items []source.Item
	ctx := context.Background()
	if err := d.List(ctx, func(it source.Item) bool { items = append(items, it); return false }, func(string, string, error) {}); err != nil {
		t.Fatal(err)
	}
	return d.Fetch(ctx, items[0])
}

func TestDataroomFetchClassifiesLatents(t *testing.T) {
	f := newFakeDataroom(t, 1)
	f.latents = func(id string) []map[string]any {
		u := func(n string) string { return f.srv.URL + "/files/" + id + "/" + n + "?X-Amz-Signature=s" }
		return []map[string]any{
			{"latent_type": "segmentation_mask", "file_direct_url": u("m.png"), "is_mask": true},
			{"latent_type": "masked_image", "file_direct_url": u("i.png"), "is_mask": true},
			{"latent_type": "latent_image_vae", "file_direct_url": u("v.npy"), "is_mask": false},
			{"latent_type": "caption_latent", "file_direct_url": u("c.npy"), "is_mask": false},
		}
	}
	raw, err := fetchOne(t, f, f.config())
	if err != nil {
		t.Fatal(err)
	}
	names := func(l []source.Named) string {
		var s []string
		for _, n := range l {
			s = append(s, n.Name+"="+string(n.Data))
		}
		return strings.Join(s, ";")
	}
	if string(raw.Image) != "bytes of /files/img000/original.jpg" ||
		names(raw.Masks) != "segmentation_mask=bytes of /files/img000/m.png" ||
		names(raw.AdditionalImages) != "masked_image=bytes of /files/img000/i.png" ||
		names(raw.Bytes) != "latent_image_vae=bytes of /files/img000/v.npy;caption_latent=bytes of /files/img000/c.npy" {
		t.Fatalf("raw %q masks %s images %s bytes %s", raw.Image, names(raw.Masks), names(raw.AdditionalImages), names(raw.Bytes))
	}
	for _, a := range f.fileAuth {
		if a != "" {
			t.Fatalf("a file request carried the token: %q", a)
		}
	}
	if raw.Meta["source"] != "src" || string(raw.Meta["attributes"].(json.RawMessage)) != `{"n":1}` {
		t.Fatalf("meta %v", raw.Meta)
	}
	// With return_latents, only those types are downloaded even if the server sends more.
	cfg := f.config()
	cfg.ReturnLatents = []string{"segmentation_mask"}
	raw, err = fetchOne(t, f, cfg)
	if err != nil || len(raw.Masks) != 1 || len(raw.AdditionalImages)+len(raw.Bytes) != 0 {
		t.Fatalf("%v %+v", err, raw)
	}
}

func TestDataroomFetchChecksStatus(t *testing.T) {
	for _, tc := range []struct {
		mode     string
		fails    int64 // requests that fail before success
		ok       bool
		requests int64
	}{
		{"404", 99, false, 1}, // permanent: not retried
		{"403", 99, false, 1},
		{"500", 2, true, 3},
		{"500", 99, false, 4}, // 1 + MaxRetries
		{"truncated", 1, true, 2},
		{"reset", 1, true, 2},
		{"empty", 99, false, 1},
	} {
		t.Run(fmt.Sprintf("%s-%d", tc.mode, tc.fails), func(t *testing.T) {
			f := newFakeDataroom(t, 1)
			f.onFile = func(n int64, w http.ResponseWriter, r *http.Request) bool {
				if n > tc.fails {
					return false
				}
				switch tc.mode {
				case "truncated":
					w.Header().Set("Content-Length", "100")
					fmt.Fprint(w, "partial")
					conn, buf, _ := w.(http.Hijacker).Hijack()
					buf.Flush()
					conn.Close()
				case "reset":
					conn, _, _ := w.(http.Hijacker).Hijack()
					conn.(*net.TCPConn).SetLinger(0)
					conn.Close()
				case "empty":
				default:
					code, _ := strconv.Atoi(tc.mode)
					w.WriteHeader(code)
					fmt.Fprint(w, "<Error><Code>AccessDenied</Code></Error>")
				}
				return true
			}
			raw, err := fetchOne(t, f, f.config())
			if tc.ok != (err == nil) || f.fileReqs.Load() != tc.requests {
				t.Fatalf("err %v, %d requests", err, f.fileReqs.Load())
			}
			if err != nil && strings.Contains(err.Error(), "SECRET") {
				t.Fatalf("the signature leaks: %v", err)
			}
			if tc.ok && string(raw.Image) != "bytes of /files/img000/original.jpg" {
				t.Fatalf("image %q", raw.Image)
			}
			var de *Error
			if tc.mode == "404" && (!errors.As(err, &de) || de.SkipReason() != "not_found") {
				t.Fatalf("err %v", err)
			}
			if tc.mode == "empty" && !errors.Is(err, source.ErrEmpty) {
				t.Fatalf("err %v", err)
			}
		})
	}
}

func TestDataroomLatentFailureFailsTheSample(t *testing.T) {
	f := newFakeDataroom(t, 1)
	f.latents = func(id string) []map[string]any {
		return []map[string]any{
			{"latent_type": "latent_vae", "file_direct_url": f.srv.URL + "/files/missing", "is_mask": false},
		}
	}
	f.onFile = func(n int64, w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/files/missing" {
			w.WriteHeader(404)
			return true
		}
		return false
	}
	_, err := fetchOne(t, f, f.config())
	if err == nil || !strings.Contains(err.Error(), `latent "latent_vae"`) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("err %v", err)
	}
}

func TestDataroomServerMessage(t *testing.T) {
	for body, want := range map[string]string{
		`{"detail":"Invalid token."}`:                                                 "Invalid token.",
		`["\"partitions_count\" should be between 2 and 48"]`:                         `"partitions_count" should be between 2 and 48`,
		`{"page_size":["Ensure this value is less than or equal to 2000."]}`:          "page_size: Ensure this value is less than or equal to 2000.",
		"<html><head><title>Server Error (500)</title></head><body><h1>x</h1></html>": "Server Error (500) x",
		``: "",
	} {
		if got := serverMessage([]byte(body)); got != want {
			t.Errorf("serverMessage(%s) = %q, want %q", body, got, want)
		}
	}
}

func TestDataroomRedaction(t *testing.T) {
	if httpretry.RedactKey(testKey) != "…wxyz" || httpretry.RedactKey("short") != "****" || httpretry.RedactKey("") != "" {
		t.Fatal("httpretry.RedactKey")
	}
	cfg := Config{APIKey: testKey}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v", &cfg)} {
		if strings.Contains(s, testKey[:20]) {
			t.Fatalf("key printed: %s", s)
		}
	}
	if got := httpretry.RedactURL("https://b.s3.amazonaws.com/x/y.png?X-Amz-Signature=abc&X-Amz-Expires=1"); got != "https://b.s3.amazonaws.com/x/y.png?…" {
		t.Fatal(got)
	}
}

func TestDataroomParseDataroomURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://h:8000/api":   "http://h:8000/api/",
		"https://h/api/?x=1":  "https://h/api/",
		"ftp://h/api/":        "error",
		"/api/":               "error",
		"http://u:p@h/api/":   "error",
		"http://[::1]:80/api": "http://[::1]:80/api/",
	} {
		u, err := parseAPIURL(in)
		got := "error"
		if err == nil {
			got = u.String()
		}
		if got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func TestDataroomListStopsPromptly(t *testing.T) {
	f := newFakeDataroom(t, 100)
	d := mustDataroom(t, f.config())
	var ids []string
	err := d.List(context.Background(), func(it source.Item) bool {
		ids = append(ids, it.ID)
		return len(ids) < 6
	}, func(string, string, error) {})
	if err != nil || len(ids) != 6 {
		t.Fatal(ids, err)
	}
	// The pager ran at most prefetchPages+2 pages ahead.
	if n := f.pageReqs.Load(); n > int64(2+prefetchPages+1) {
		t.Fatalf("%d page requests for 6 items", n)
	}
}

// recordingCommon is testCommon whose Go recovers a panic and records it, as the pipeline's does.
type recordingCommon struct {
	mu     sync.Mutex
	panics []string
}

// wait returns the panics once there are n: the wrapper records after fn's own defers have run.
func (rc *recordingCommon) wait(t *testing.T, n int) []string {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		rc.mu.Lock()
		got := append([]string(nil), rc.panics...)
		rc.mu.Unlock()
		if len(got) >= n {
			return got
		}
	}
	t.Fatalf("fewer than %d panics reached Go", n)
	return nil
}

func (rc *recordingCommon) common() source.Common {
	c := testCommon()
	c.Go = func(name string, fn func()) {
		go func() {
			defer func() {
				if r := recover(); r != nil {
					rc.mu.Lock()
					rc.panics = append(rc.panics, fmt.Sprintf("%s: %v", name, r))
					rc.mu.Unlock()
				}
			}()
			fn()
		}()
	}
	return c
}

// A panic in the pager goroutine reaches the Go of Common, and List still returns.
func TestDataroomPagerPanicGoesThroughCommonGo(t *testing.T) {
	f := newFakeDataroom(t, 10)
	rc := &recordingCommon{}
	d, err := newSource(f.config(), rc.common())
	if err != nil {
		t.Fatal(err)
	}
	d.points = faults.Arm("dataroom.pager")
	res := listAll(t, d)
	if panics := rc.wait(t, 1); len(panics) != 1 || !strings.Contains(panics[0], "dataroom pager: injected panic at dataroom.pager") || len(res.ids) != 0 {
		t.Fatalf("panics %q, ids %v, err %v", panics, res.ids, res.err)
	}
}

// A panic in a file download goroutine comes out of Fetch, in the caller's goroutine (the
// pipeline's fetcher, which skips the sample), never out of a goroutine of its own.
func TestDataroomDownloadPanicComesOutOfFetch(t *testing.T) {
	f := newFakeDataroom(t, 1)
	f.latents = func(id string) []map[string]any {
		return []map[string]any{{"latent_type": "latent_a", "file_direct_url": f.srv.URL + "/files/" + id + ".a", "is_mask": false}}
	}
	d := mustDataroom(t, f.config())
	var items []source.Item
	if err := d.List(context.Background(), func(it source.Item) bool { items = append(items, it); return false }, func(string, string, error) {}); err != nil {
		t.Fatal(err)
	}
	d.points = faults.Arm("dataroom.download")
	got := func() (r any) {
		defer func() { r = recover() }()
		d.Fetch(context.Background(), items[0])
		return nil
	}()
	if msg := fmt.Sprint(got); !strings.Contains(msg, "injected panic at dataroom.download") || !strings.Contains(msg, "in a download goroutine") {
		t.Fatalf("recovered %q", msg)
	}
}
