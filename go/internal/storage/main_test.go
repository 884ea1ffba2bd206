package storage

import (
	"os"
	"testing"

	"github.com/datago-dev/datago/internal/storage/storagetest"
)

// TestMain runs the tests away from this machine's AWS configuration (storagetest.IsolateAWS).
func TestMain(m *testing.M) {
	storagetest.IsolateAWS()
	os.Exit(m.Run())
}
