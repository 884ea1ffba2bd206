package datago

import (
	"github.com/datago-dev/datago/internal/config"
	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/resume"
)

// The configuration and resume state live in internal packages; these names keep the public Go API.
type (
	// Config is a validated loader configuration. Its JSON form keeps the keys of the original datago.
	Config = config.Config
	// ImageConfig controls the processing applied to every image.
	ImageConfig = config.ImageConfig
	// ConfigError is a configuration mistake; Key is the path of the offending key, e.g. "source_config.rank".
	ConfigError = confread.Error
	// State is what a client has done, enough to resume it exactly (Client.State, resume_state).
	State = resume.State
	// EpochState is the done set of one epoch in a State.
	EpochState = resume.EpochState
)

// StateVersion is the version of the resume state format.
const StateVersion = resume.Version

// Default values and limits, documented in README.md.
const (
	DefaultPrefetchBufferSize = config.DefaultPrefetchBufferSize
	DefaultSamplesBufferSize  = config.DefaultSamplesBufferSize
	DefaultImageSize          = config.DefaultImageSize
	DefaultDownsamplingRatio  = config.DefaultDownsamplingRatio
	DefaultMinAspectRatio     = config.DefaultMinAspectRatio
	DefaultMaxAspectRatio     = config.DefaultMaxAspectRatio
	DefaultMaxPixels          = config.DefaultMaxPixels
	DefaultMaxFileBytes       = config.DefaultMaxFileBytes
)

// ParseConfig reads, validates and completes a JSON configuration.
func ParseConfig(data []byte) (*Config, error) { return config.Parse(data) }

// ParseImageConfig validates an image_config object on its own (used to compute buckets for callers).
func ParseImageConfig(data []byte) (*ImageConfig, error) { return config.ParseImageConfig(data) }
