//go:build cgo

// Package cenv reads environment variables through C. Inside libdatago.so, Go's os.Getenv reads a
// copy of the environment taken when the library was loaded, so a variable set later from Python
// (os.environ[...] = ...) would be missed; C's getenv sees it. (Go's own Setenv, as used by tests,
// updates the C environment too when cgo is linked.)
package cenv

/*
#include <stdlib.h>
*/
import "C"

import (
	"os"
	"unsafe"
)

// Getenv returns the variable's value as the process has it now ("" when unset).
func Getenv(name string) string {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	if v := C.getenv(cname); v != nil {
		return C.GoString(v)
	}
	return os.Getenv(name)
}
