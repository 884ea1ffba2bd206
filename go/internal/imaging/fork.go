package imaging

// #include "vips.h"
import "C"

import "sync"

// forkGate is held (shared) by every Process call. fork() copies a process with whatever locks
// its other threads hold at that instant; a child that then uses libvips (through a fresh copy of
// the library) would wait forever on a glib or libvips lock held by a worker that does not exist
// in the child. HoldForFork waits until no image is being processed and keeps new ones out.
var forkGate sync.RWMutex

// HoldForFork blocks until no thread is inside libvips and keeps them out until ReleaseAfterFork.
// It also occupies libvips' idle worker threads (fork.c): the child inherits libvips' list of
// them, not the threads, and would hand them work that never runs.
func HoldForFork() {
	forkGate.Lock()
	C.dg_fork_hold()
}

// ReleaseAfterFork lets processing resume (in the parent, after fork).
func ReleaseAfterFork() {
	C.dg_fork_release()
	forkGate.Unlock()
}

// PrepareForkedChild must run before any image is processed in a forked child that loaded a fresh
// copy of the library: the child shares the parent's libvips, whose generated SIMD code lives in
// memory that fork() leaves shared between the two processes.
func PrepareForkedChild() { C.dg_no_jit() }
