package source

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadBodyRefusesBodiesOverTheLimit(t *testing.T) {
	body := strings.Repeat("x", 100)
	for _, tc := range []struct {
		length int64 // announced; -1: chunked
		limit  int64
		ok     bool
	}{
		{100, 100, true}, {100, 99, false}, {-1, 100, true}, {-1, 99, false}, {-1, 0, true},
	} {
		resp := &http.Response{ContentLength: tc.length, Body: io.NopCloser(strings.NewReader(body))}
		got, err := readBody(resp, tc.limit)
		var tl *TooLargeError
		switch {
		case tc.ok && (err != nil || string(got) != body):
			t.Errorf("%+v: %d bytes, %v", tc, len(got), err)
		case !tc.ok && (!errors.As(err, &tl) || tl.SkipReason() != ReasonTooLarge):
			t.Errorf("%+v: want a TooLargeError, got %v", tc, err)
		}
	}
}

func TestFilesystemFetchRefusesFilesOverTheLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a.png")
	if err := os.WriteFile(p, make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	for limit, ok := range map[int64]bool{0: true, 1000: true, 999: false} {
		raw, err := NewFilesystem(FilesystemConfig{MaxFileBytes: limit}).Fetch(context.Background(), Item{ID: p, Path: p})
		var tl *TooLargeError
		if ok && (err != nil || len(raw.Image) != 1000) || !ok && (!errors.As(err, &tl) || tl.Size != 1000) {
			t.Errorf("limit %d: %v", limit, err)
		}
	}
}
