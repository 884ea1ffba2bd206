//go:build !cgo

package cenv

import "os"

// Getenv returns the variable's value ("" when unset). Without cgo there is no C environment
// apart from Go's, so os.Getenv sees what the process has.
func Getenv(name string) string { return os.Getenv(name) }
