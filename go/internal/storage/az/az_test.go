package az

import (
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	c, p, err := Split("az://images/train/a.jpg")
	if err != nil || c != "images" || p != "train/a.jpg" {
		t.Errorf("got %q %q %v", c, p, err)
	}
	if _, _, err := Split("az:///x"); err == nil || !strings.Contains(err.Error(), "names no container") {
		t.Errorf("got %v", err)
	}
}

func TestScrubDropsSASSignatures(t *testing.T) {
	msg := scrub("GET https://acct.blob.core.windows.net/c/b?sv=2024&sig=SECRETSIG%3D failed: sig=SECRETSIG")
	if strings.Contains(msg, "SECRETSIG") || !strings.Contains(msg, "https://acct.blob.core.windows.net/c/b?…") {
		t.Errorf("got %q", msg)
	}
}
