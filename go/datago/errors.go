package datago

import (
	"errors"

	"github.com/datago-dev/datago/internal/source"
)

var (
	// ErrEnd: the source is exhausted or the limit reached.
	ErrEnd = errors.New("end of samples")
	// ErrTimeout: no sample was ready within the timeout.
	ErrTimeout = errors.New("timeout waiting for a sample")
	// ErrState: the call does not fit the client's state.
	ErrState = errors.New("invalid client state")
)

// Skip reasons of the pipeline (every reason is defined in internal/source/reasons.go).
const (
	ReasonDecodeError = source.ReasonDecodeError
	ReasonTooLarge    = source.ReasonTooLarge
	ReasonEmpty       = source.ReasonEmpty
	ReasonReadError   = source.ReasonReadError
	ReasonInternal    = source.ReasonInternal
	ReasonNoBatch     = source.ReasonNoBatch
)
