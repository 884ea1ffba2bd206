package webdataset

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/datago-dev/datago/internal/source"
)

// listErr lists cfg and returns the listing's error, the samples delivered and how long it took.
func listErr(t *testing.T, cfg Config) (error, int, time.Duration) {
	t.Helper()
	n := 0
	t0 := time.Now()
	err := newSource(withDefaults(cfg), testCommon()).List(context.Background(),
		func(source.Item) bool { n++; return true }, func(string, string, error) {})
	return err, n, time.Since(t0)
}

func shardURLs(base string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s/shard-%04d.tar?sig=secret%d", base, i, i)
	}
	return out
}

// A list whose every shard is refused, or answers 404, ends early with an error that names the
// cause and the first shards (their signatures redacted), instead of trying all 500.
func TestDeadShardListEndsEarlyNamingTheCause(t *testing.T) {
	refused := func() string { // a loopback port nobody listens on
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return "http://" + addr
	}()
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	for _, tc := range []struct{ name, base, cause string }{
		{"refused", refused, "connection refused"},
		{"404", notFound.URL, "HTTP 404 Not Found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err, n, took := listErr(t, Config{Shards: shardURLs(tc.base, 500), MaxRetries: 2})
			if err == nil || n != 0 {
				t.Fatalf("want an error and nothing delivered, got %v and %d samples", err, n)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.cause) || !strings.Contains(msg, "shard-0000.tar") || strings.Contains(msg, "secret") {
				t.Fatalf("message %q should name %q and the first shard, without its signature", msg, tc.cause)
			}
			if took > 10*time.Second {
				t.Fatalf("took %v", took)
			}
		})
	}
}

// Some dead shards among good ones: everything the good ones hold arrives, no error.
func TestPartlyDeadShardListDeliversTheRest(t *testing.T) {
	files := map[string][]byte{}
	var shards []string
	for i := 0; i < 20; i++ {
		name := fmt.Sprintf("/s-%d.tar", i)
		if i%2 == 1 {
			files[name] = wdsShard(t, i, 5)
		}
		shards = append(shards, name)
	}
	s := newWDSFaultServer(t, files)
	for i := range shards {
		shards[i] = s.URL + shards[i]
	}
	err, n, _ := listErr(t, Config{Shards: shards, ConcurrentDownloads: 2})
	if err != nil || n != 50 {
		t.Fatalf("want the 50 samples of the 10 good shards, got %d and %v", n, err)
	}
	// Seven dead shards, then one that works, then 40 dead ones: not a dead list, everything delivered.
	s2 := newWDSFaultServer(t, map[string][]byte{"/good.tar": wdsShard(t, 0, 7)})
	mixed := append(append(shardURLs(s2.URL, 7), s2.URL+"/good.tar"), shardURLs(s2.URL+"/late", 40)...)
	err, n, _ = listErr(t, Config{Shards: mixed, ConcurrentDownloads: 1})
	if err != nil || n != 7 {
		t.Fatalf("seven dead shards then a good one: got %d and %v", n, err)
	}
}

func TestFailureCauses(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&net.DNSError{Err: "no such host", Name: "example.invalid"}, `the host "example.invalid" cannot be resolved (no such host)`},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "connection refused"},
		{&streamError{&statusError{403, "403 Forbidden"}}, "HTTP 403 Forbidden"},
		{&statusError{503, "503 Service Unavailable"}, ""}, // retried, and not a sign of a wrong list
		{fmt.Errorf("open: %w", os.ErrNotExist), "no such file"},
		{errors.New("unexpected EOF"), ""},
	} {
		if got := failureCause(tc.err); got != tc.want {
			t.Errorf("failureCause(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
