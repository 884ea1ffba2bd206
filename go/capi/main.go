// Command capi is built with -buildmode=c-shared into libdatago.so: the C ABI declared in datago.h
// (which cgo includes, so a Go signature drifting from the header fails the build).
//
// Ownership: inputs are borrowed for the call. Everything returned is C memory from malloc, owned
// by the caller until it calls datago_free / datago_sample_free / datago_batch_free. Go objects
// never cross: clients and catalogs are integer handles into tables (handles.go).
//
// Panics: every export body runs inside the guard (guard.go). The first recovered panic is returned
// as DATAGO_ERR_INTERNAL and poisons the library; every later call fails fast with that status.
//
// Files: exports.go holds every //export and nothing else; free.c the two free functions written
// in C (datago_sample_free, datago_batch_free: no entry into Go per sample); convert.go turns Go values (samples,
// batches, errors, JSON) into C; handles.go is the handle table; guard.go the poison state machine.
package main

import (
	"os"
	"runtime"

	"github.com/datago-dev/datago/internal/faults"
)

func main() {}

// faultPoints arms the injected panic of the ABI tests (DATAGO_TEST_PANIC=abi), read once at load.
var faultPoints = faults.FromEnv()

func init() {
	// The caller's thread (Python's) enters Go for every sample and needs a P to run on; with
	// one P per core all of them can be held by decoding workers, and the caller then waits for
	// one to be released. One more P than cores lets it in at once: +7-12% samples/s from
	// Python on 2 cores (tests/bench, cases B and H).
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(runtime.NumCPU() + 1)
	}
}
