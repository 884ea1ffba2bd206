// Package faults injects panics at named points of the loader. It exists for the tests that prove
// a panic anywhere (a source's goroutine, a worker, the collector, an exported call) becomes an
// error for the caller instead of a dead host process. Outside those tests DATAGO_TEST_PANIC is
// unset and every point is a comparison with "".
package faults

import "github.com/datago-dev/datago/internal/cenv"

// Env names the point that panics, e.g. DATAGO_TEST_PANIC=collect.
const Env = "DATAGO_TEST_PANIC"

// Points is the armed point, read once per client (or per process for the C ABI).
type Points struct{ armed string }

// FromEnv reads the armed point from the environment.
func FromEnv() Points { return Points{armed: cenv.Getenv(Env)} }

// Arm returns Points armed at point (tests inside the Go module).
func Arm(point string) Points { return Points{armed: point} }

// Hit panics when point is the armed one.
func (p Points) Hit(point string) {
	if p.armed != "" && p.armed == point {
		panic("injected panic at " + point + " (" + Env + ")")
	}
}
