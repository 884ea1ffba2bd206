package main

/*
extern char **environ;
*/
import "C"

import (
	"os"
	"strings"
	"sync"
	"unsafe"
)

var environMu sync.Mutex

// syncEnviron makes Go's environment the process's current one. The Go runtime of a shared library
// copies the environment once, as it was when the process started, so the variables a host sets
// later (Python's os.environ["AWS_PROFILE"] = ... before creating a client) would stay invisible to
// the storage providers' SDKs, which read os.Getenv. Called before every client or catalog is built.
func syncEnviron() {
	environMu.Lock()
	defer environMu.Unlock()
	current := map[string]string{}
	for i := 0; C.environ != nil; i++ {
		entry := *(**C.char)(unsafe.Add(unsafe.Pointer(C.environ), uintptr(i)*unsafe.Sizeof(C.environ)))
		if entry == nil {
			break
		}
		if k, v, ok := strings.Cut(C.GoString(entry), "="); ok && k != "" {
			current[k] = v
		}
	}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "" {
			if _, ok := current[k]; !ok {
				os.Unsetenv(k)
			}
		}
	}
	for k, v := range current {
		if cur, ok := os.LookupEnv(k); !ok || cur != v {
			os.Setenv(k, v)
		}
	}
}
