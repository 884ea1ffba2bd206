package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/datago-dev/datago/datago"
)

func TestHandleTable(t *testing.T) {
	a, b := newTable[string]("apple"), newTable[int]("banana")
	ha, hb := a.add("x"), b.add(7)
	if ha == 0 || hb == 0 || ha == hb {
		t.Fatalf("handles %d and %d must be distinct and non-zero", ha, hb)
	}
	if v, err := a.get(ha); err != nil || v != "x" {
		t.Fatalf("get = %q, %v", v, err)
	}
	// A handle of another table is unknown here, not someone else's object.
	if _, err := a.get(hb); !errors.Is(err, datago.ErrState) || !strings.Contains(err.Error(), "apple handle") {
		t.Fatalf("foreign handle: %v", err)
	}
	if v, ok := a.remove(ha); !ok || v != "x" {
		t.Fatalf("remove = %q, %v", v, ok)
	}
	if _, ok := a.remove(ha); ok {
		t.Fatal("removed twice")
	}
	if _, err := a.get(ha); !errors.Is(err, datago.ErrState) {
		t.Fatalf("freed handle: %v", err)
	}
}
