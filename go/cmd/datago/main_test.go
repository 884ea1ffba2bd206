package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The CLI end to end on a generated folder (go test -race runs it under the race detector).
func TestRunReportsThroughputAndSkips(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 12; i++ {
		f, err := os.Create(filepath.Join(root, fmt.Sprintf("%02d.png", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, image.NewRGBA(image.Rect(0, 0, 40+i, 30))); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if err := os.WriteFile(filepath.Join(root, "bad.jpg"), []byte("not a jpeg"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	o := options{root: root, crop: true, size: 64, worldSize: 1, limit: -1}
	if err := run(o, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"samples      12 ", "samples/s", "read MB/s", "skipped      1", "decode_error 1"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(errOut.String(), "12 samples") {
		t.Errorf("no progress line on stderr: %q", errOut.String())
	}
	if err := run(options{}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "-root") {
		t.Errorf("no source: got %v", err)
	}
}

func TestRunFromConfigFile(t *testing.T) {
	root := t.TempDir()
	for i := 0; i < 5; i++ {
		f, err := os.Create(filepath.Join(root, fmt.Sprintf("%d.png", i)))
		if err != nil {
			t.Fatal(err)
		}
		if err := png.Encode(f, image.NewGray(image.Rect(0, 0, 20, 20))); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	cfg := filepath.Join(t.TempDir(), "cfg.json")
	js := fmt.Sprintf(`{"source_type": "filesystem", "source_config": {"root_path": %q}, "limit": 3}`, root)
	if err := os.WriteFile(cfg, []byte(js), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run(options{config: cfg, limit: -1, quiet: true}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "samples      3 ") || errOut.Len() != 0 {
		t.Fatalf("stdout %q stderr %q", out.String(), errOut.String())
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"source_type": "filesystem", "source_config": {"root_path": "/nope"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(options{config: bad, limit: -1}, &out, &errOut); err == nil || !strings.Contains(err.Error(), "source_config.root_path") {
		t.Fatalf("bad config: %v", err)
	}
}
