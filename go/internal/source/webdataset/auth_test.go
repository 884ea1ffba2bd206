package webdataset

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// auth_token is sent as a bearer token to the shard's host, and not to the host a download
// redirects to (as Hugging Face's do, to its storage); without it the private shard is refused.
func TestAuthTokenGoesToTheShardsOwnHostOnly(t *testing.T) {
	const token = "hf_secretTOKENvalue1234"
	shard := wdsShard(t, 0, 6)
	var mu sync.Mutex
	var storageAuth []string
	storage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		storageAuth = append(storageAuth, r.Header.Get("Authorization"))
		mu.Unlock()
		w.Write(shard)
	}))
	t.Cleanup(storage.Close)
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "private dataset", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/direct.tar":
			w.Write(shard)
		case "/same-host.tar": // a redirect on the same host keeps the token
			http.Redirect(w, r, "/direct.tar", http.StatusFound)
		default:
			http.Redirect(w, r, storage.URL+"/blob.tar", http.StatusFound)
		}
	}))
	t.Cleanup(hub.Close)

	for _, path := range []string{"/direct.tar", "/same-host.tar", "/redirected.tar"} {
		l := listWDS(t, Config{Shards: []string{hub.URL + path}, AuthToken: token, Timeout: 5 * time.Second, MaxRetries: 1})
		if len(l.items) != 6 || len(l.skipped) != 0 {
			t.Fatalf("%s: %d items, skipped %v", path, len(l.items), l.skipped)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(storageAuth) == 0 {
		t.Fatal("the redirect was not followed")
	}
	for _, a := range storageAuth {
		if a != "" {
			t.Fatalf("the token reached the redirect target: %q", a)
		}
	}
	// Without the token: every shard (the only one) refused, so the list is dead: an error naming
	// the status, and no message carries a token.
	err, n, _ := listErr(t, Config{Shards: []string{hub.URL + "/direct.tar"}, Timeout: 5 * time.Second, MaxRetries: 1})
	if err == nil || n != 0 || !strings.Contains(err.Error(), "HTTP 401") || strings.Contains(err.Error(), token) {
		t.Fatalf("without the token: %d items, error %v", n, err)
	}
}

func TestAuthTokenConfig(t *testing.T) {
	dir := t.TempDir()
	shard := writeShards(t, dir, 1, 1)[0]
	wc, err := parseConfig(t, `"url": "`+shard+`", "auth_token": "hf_x"`)
	if err != nil || wc.AuthToken != "hf_x" {
		t.Fatalf("%v %q", err, wc.AuthToken)
	}
	if _, err := parseConfig(t, `"url": "`+shard+`", "auth_token": 3`); err == nil {
		t.Fatal("a number is not a token")
	}
}
