// Package storagetest holds what the storage packages' tests share.
package storagetest

import (
	"os"
	"strings"
)

// IsolateAWS keeps a test binary off this machine's AWS configuration and credentials and off the
// instance metadata service, whatever the environment it runs in holds; call it from TestMain.
func IsolateAWS() {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			os.Unsetenv(k)
		}
	}
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Setenv("AWS_CONFIG_FILE", "/nonexistent/datago-tests/aws-config")
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/datago-tests/aws-credentials")
}
