package webdataset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// wdsFaultServer serves files over HTTP with Range support and injected faults.
type wdsFaultServer struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	requests int           // requests received
	status   map[int]int   // request number (1-based) -> status code to answer instead
	always   int           // status answered to every request (0: none)
	cutAfter int64         // cut the connection after this many body bytes...
	cuts     int           // ...on this many responses
	noRange  bool          // ignore Range headers
	stallAt  int64         // pause before sending this byte of the file...
	stall    time.Duration // ...for this long, once (every time with stallAll)
	stallAll bool
	ranges   []string         // Range headers received
	etag     func(int) string // ETag of the n-th response (nil: none)
}

func newWDSFaultServer(t testing.TB, files map[string][]byte) *wdsFaultServer {
	s := &wdsFaultServer{files: files, status: map[int]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *wdsFaultServer) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	n := s.requests
	data, ok := s.files[r.URL.Path]
	code := s.status[n]
	if s.always != 0 {
		code = s.always
	}
	rng := r.Header.Get("Range")
	s.ranges = append(s.ranges, rng)
	cut := int64(-1)
	if s.cuts > 0 {
		s.cuts--
		cut = s.cutAfter
	}
	noRange, stallAt, stall := s.noRange, s.stallAt, s.stall
	etag := ""
	if s.etag != nil {
		etag = s.etag(n)
	}
	s.mu.Unlock()
	if code != 0 {
		http.Error(w, "injected", code)
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	start := int64(0)
	status := http.StatusOK
	if rng != "" && !noRange {
		first, last, _ := strings.Cut(strings.TrimPrefix(rng, "bytes="), "-")
		v, err := strconv.ParseInt(first, 10, 64)
		total := len(data)
		if last != "" { // a closed range: the body ends at its last byte
			if l, lerr := strconv.Atoi(last); lerr == nil && l >= int(v) && l < total {
				data = data[:l+1]
			} else {
				err = fmt.Errorf("bad range %q", rng)
			}
		}
		if err != nil || v > int64(len(data)) {
			http.Error(w, "bad range", http.StatusRequestedRangeNotSatisfiable)
			return
		}
		start, status = v, http.StatusPartialContent
		w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", v, len(data)-1, total))
	}
	if !noRange {
		w.Header().Set("Accept-Ranges", "bytes")
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)-int(start)))
	w.WriteHeader(status)
	body := data[start:]
	if cut >= 0 && cut < int64(len(body)) {
		w.Write(body[:cut])
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // closes the connection mid-body
	}
	if stall > 0 && stallAt >= start && stallAt < int64(len(data)) {
		w.Write(data[start:stallAt])
		w.(http.Flusher).Flush()
		s.mu.Lock()
		if !s.stallAll {
			s.stall = 0
		}
		s.mu.Unlock()
		select {
		case <-time.After(stall):
		case <-r.Context().Done():
			return
		}
		body = data[stallAt:]
	}
	w.Write(body)
}

func (s *wdsFaultServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func testBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func readHTTP(t *testing.T, url string, timeout time.Duration, retries int) ([]byte, *httpStream, error) {
	t.Helper()
	h := newHTTPStream(context.Background(), newHTTPClient(timeout, 2, false), url, timeout, retries, time.Millisecond)
	defer h.Close()
	var out bytes.Buffer
	_, err := io.Copy(&out, io.LimitReader(h, 1<<30))
	return out.Bytes(), h, err
}

func TestHTTPStreamResumesWithRange(t *testing.T) {
	data := testBytes(100_000)
	s := newWDSFaultServer(t, map[string][]byte{"/a.tar": data})
	s.cutAfter, s.cuts = 30_000, 3
	got, h, err := readHTTP(t, s.URL+"/a.tar", 5*time.Second, 2)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, err %v", len(got), err)
	}
	want := []string{"", "bytes=30000-", "bytes=60000-", "bytes=90000-"}
	if !wdsSame(s.ranges, want) || h.resumes != 3 {
		t.Fatalf("ranges %q (want %q), %d resumes", s.ranges, want, h.resumes)
	}
}

func TestHTTPStreamEndIsFinal(t *testing.T) {
	data := testBytes(3000)
	s := newWDSFaultServer(t, map[string][]byte{"/a.tar": data})
	h := newHTTPStream(context.Background(), newHTTPClient(time.Second, 2, false), s.URL+"/a.tar", time.Second, 2, time.Millisecond)
	defer h.Close()
	got, err := io.ReadAll(h)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if n, err := h.Read(make([]byte, 10)); n != 0 || err != io.EOF || s.count() != 1 {
		t.Fatalf("a read after the end: %d, %v, %d requests", n, err, s.count())
	}
}

func TestHTTPStreamWithoutRangeSupportSkipsWhatWasRead(t *testing.T) {
	data := testBytes(100_000)
	s := newWDSFaultServer(t, map[string][]byte{"/a.tar": data})
	s.cutAfter, s.cuts, s.noRange = 40_000, 2, true
	got, _, err := readHTTP(t, s.URL+"/a.tar", 5*time.Second, 2)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, err %v", len(got), err)
	}
	if s.count() != 3 {
		t.Fatalf("%d requests, want 3", s.count())
	}
}

func TestHTTPStreamRetriesServerErrors(t *testing.T) {
	data := testBytes(5000)
	s := newWDSFaultServer(t, map[string][]byte{"/a.tar": data})
	s.status[1], s.status[2] = 500, 503
	got, _, err := readHTTP(t, s.URL+"/a.tar", 5*time.Second, 2)
	if err != nil || !bytes.Equal(got, data) || s.count() != 3 {
		t.Fatalf("read %d bytes, err %v, %d requests", len(got), err, s.count())
	}
}

func TestHTTPStreamGivesUpAfterMaxRetries(t *testing.T) {
	s := newWDSFaultServer(t, map[string][]byte{"/a.tar": testBytes(10)})
	s.always = 502
	_, _, err := readHTTP(t, s.URL+"/a.tar", 5*time.Second, 2)
	var se *streamError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "502") || s.count() != 3 {
		t.Fatalf("err %v after %d requests; want a stream error after 3", err, s.count())
	}
}

func TestHTTPStreamDoesNotRetryNotFound(t *testing.T) {
	s := newWDSFaultServer(t, nil)
	_, _, err := readHTTP(t, s.URL+"/missing.tar", 5*time.Second, 3)
	if err == nil || !strings.Contains(err.Error(), "404") || s.count() != 1 {
		t.Fatalf("err %v after %d requests", err, s.count())
	}
}

func TestHTTPStreamResumesAfterAStall(t *testing.T) {
	data := testBytes(50_000)
	s := newWDSFaultServer(t, map[string][]byte{"/a.tar": data})
	s.stallAt, s.stall = 20_000, 10*time.Second
	start := time.Now()
	got, h, err := readHTTP(t, s.URL+"/a.tar", time.Second, 3)
	if err != nil || !bytes.Equal(got, data) || h.resumes < 1 {
		t.Fatalf("read %d bytes, err %v, %d resumes", len(got), err, h.resumes)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("took %v: the stall was not cut short", el)
	}
	found := false
	for _, r := range s.ranges {
		found = found || r == "bytes=20000-"
	}
	if !found {
		t.Fatalf("ranges %q: no resume from the stall", s.ranges)
	}
}

func TestHTTPStreamNoticesAChangedFile(t *testing.T) {
	data := testBytes(50_000)
	s := newWDSFaultServer(t, map[string][]byte{"/a.tar": data})
	s.cutAfter, s.cuts = 10_000, 1
	s.etag = func(n int) string { return fmt.Sprintf(`"v%d"`, n) }
	_, _, err := readHTTP(t, s.URL+"/a.tar", 5*time.Second, 2)
	if err == nil || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("err %v, want the shard changed", err)
	}
}

func TestHTTPStreamStopsWhenCancelled(t *testing.T) {
	data := testBytes(50_000)
	s := newWDSFaultServer(t, map[string][]byte{"/a.tar": data})
	s.stallAt, s.stall = 1000, 10*time.Second
	ctx, cancel := context.WithCancel(context.Background())
	h := newHTTPStream(ctx, newHTTPClient(time.Minute, 2, false), s.URL+"/a.tar", time.Minute, 5, time.Millisecond)
	defer h.Close()
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := io.Copy(io.Discard, h)
	if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
}
