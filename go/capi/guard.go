package main

import (
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync/atomic"
)

// guard is the library's poison state machine: healthy until the first recovered panic, poisoned
// for ever after. A panic means some Go state (a client, a handle table, a pipeline) may be half
// updated; carrying on could hand out corrupt samples or deadlock, so every later call fails fast
// instead, with a message naming the first panic, and the host process can report it and exit.
type guard struct {
	first  atomic.Pointer[string] // the first panic's value; nil while healthy
	stderr io.Writer
}

// internalError is a recovered panic, or a call refused because the library is poisoned;
// the C ABI reports both as DATAGO_ERR_INTERNAL.
type internalError struct{ msg string }

func (e *internalError) Error() string { return e.msg }

// lib is the guard of every export.
var lib = &guard{stderr: os.Stderr}

// check returns the poison error once the library is poisoned, nil before.
func (g *guard) check() error {
	if first := g.first.Load(); first != nil {
		return &internalError{fmt.Sprintf("datago internal error: the library is unusable after an earlier "+
			"internal error (%s); restart the process", *first)}
	}
	return nil
}

// run calls fn unless the library is poisoned (then it returns the poison error without calling it).
// A panic in fn poisons the library and comes back as an *internalError.
func (g *guard) run(fn func()) error {
	if err := g.check(); err != nil {
		return err
	}
	return g.protect(fn)
}

// protect calls fn even when poisoned (for functions that only free C memory, which no Go state can
// have broken); a panic in fn poisons the library as in run.
func (g *guard) protect(fn func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = g.recovered(r, debug.Stack())
		}
	}()
	fn()
	return nil
}

// recovered poisons the library with panic value r (only the first panic is kept) and prints the
// first panic's stack to stderr, once: a host that loses the returned message still leaves a trace.
func (g *guard) recovered(r any, stack []byte) error {
	value := fmt.Sprint(r)
	if g.first.CompareAndSwap(nil, &value) {
		fmt.Fprintf(g.stderr, "datago: internal error (a Go panic), the library is now unusable: %s\n%s", value, stack)
		return &internalError{fmt.Sprintf("datago internal error: %s\n%s", value, stack)}
	}
	// Another call panicked first (concurrently): this one's panic is reported, the first one named.
	return &internalError{fmt.Sprintf("datago internal error: %s (after an earlier internal error: %s)", value, *g.first.Load())}
}
