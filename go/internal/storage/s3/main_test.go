package s3

import (
	"os"
	"strings"
	"testing"
)

// TestMain keeps the tests off this machine's AWS configuration and credentials and off the instance
// metadata service, whatever the environment they are run from holds.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			os.Unsetenv(k)
		}
	}
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Setenv("AWS_CONFIG_FILE", "/nonexistent/datago-tests/aws-config")
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/datago-tests/aws-credentials")
	os.Exit(m.Run())
}
