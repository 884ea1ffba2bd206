package config

import (
	"fmt"
	"strings"

	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/source/dataroom"
	"github.com/datago-dev/datago/internal/source/filesystem"
	"github.com/datago-dev/datago/internal/source/webdataset"
)

// Kinds are the values of source_type, one line per source. Adding a source is a package under
// internal/source and a line here.
var Kinds = []*source.Kind{
	&dataroom.Kind,
	&filesystem.Kind,
	&webdataset.Kind,
}

func lookupKind(name string) *source.Kind {
	for _, k := range Kinds {
		for _, n := range k.Names {
			if strings.EqualFold(n, name) {
				return k
			}
		}
	}
	return nil
}

func kindNames() string {
	var names []string
	for _, k := range Kinds {
		for _, n := range k.Names {
			names = append(names, fmt.Sprintf("%q", n))
		}
	}
	return strings.Join(names, ", ")
}
