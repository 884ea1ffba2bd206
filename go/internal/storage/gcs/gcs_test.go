package gcs

import (
	"strings"
	"testing"
)

func TestSplitAndEmulatorEndpoint(t *testing.T) {
	b, k, err := Split("gs://bucket/a/b.jpg")
	if err != nil || b != "bucket" || k != "a/b.jpg" {
		t.Errorf("got %q %q %v", b, k, err)
	}
	if _, _, err := Split("gs:///x"); err == nil || !strings.Contains(err.Error(), "names no bucket") {
		t.Errorf("got %v", err)
	}
	t.Setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")
	be, err := New(Options{})
	if err != nil || be.base != "http://127.0.0.1:4443" || !be.emulated {
		t.Errorf("emulator: %+v %v", be, err)
	}
	be, err = New(Options{Endpoint: "https://storage.example/"})
	if err != nil || be.base != "https://storage.example" || be.emulated {
		t.Errorf("endpoint key: %+v %v", be, err)
	}
}
