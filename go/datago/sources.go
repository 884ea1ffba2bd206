package datago

import (
	"fmt"
	"strings"

	"github.com/datago-dev/datago/internal/source"
)

// sourceKind is one value of source_type: how to read its source_config and open it. Each source
// registers itself from its own file (source_*.go), so adding one touches no shared code.
type sourceKind struct {
	names []string                        // accepted spellings of source_type; the first is canonical
	parse func(r *reader, sc *object) any // reads source_config (r.finish is called after)
	open  func(cfg *Config) (source.Source, error)
}

var sourceKinds []*sourceKind

func registerSource(k *sourceKind) { sourceKinds = append(sourceKinds, k) }

func lookupSource(name string) *sourceKind {
	for _, k := range sourceKinds {
		for _, n := range k.names {
			if strings.EqualFold(n, name) {
				return k
			}
		}
	}
	return nil
}

func sourceNames() string {
	var names []string
	for _, k := range sourceKinds {
		for _, n := range k.names {
			names = append(names, fmt.Sprintf("%q", n))
		}
	}
	return strings.Join(names, ", ")
}
