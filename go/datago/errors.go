package datago

import (
	"errors"

	"github.com/datago-dev/datago/datago/source"
)

var (
	// ErrEnd: the source is exhausted or the limit reached.
	ErrEnd = errors.New("end of samples")
	// ErrTimeout: no sample was ready within the timeout.
	ErrTimeout = errors.New("timeout waiting for a sample")
	// ErrState: the call does not fit the client's state.
	ErrState = errors.New("invalid client state")
)

// Skip reasons that come from image processing (sources add theirs).
const (
	ReasonDecodeError = "decode_error"
	ReasonTooLarge    = source.ReasonTooLarge
	ReasonEmpty       = source.ReasonEmpty
	ReasonReadError   = source.ReasonReadError
	ReasonInternal    = "internal_error"
	ReasonNoBatch     = "no_image_for_batch"
)
