package datago

import (
	"fmt"
	"math"
	"os"

	"github.com/datago-dev/datago/internal/source"
)

// DefaultPageSize is the default source_config.page_size.
const DefaultPageSize = 512

func init() {
	registerSource(&sourceKind{
		names: []string{"filesystem", "file"},
		parse: parseFilesystem,
		open: func(cfg *Config) (source.Source, error) {
			fc := cfg.Source.(source.FilesystemConfig)
			fc.MaxFileBytes = cfg.MaxFileBytes
			return source.NewFilesystem(fc), nil
		},
	})
}

func parseFilesystem(r *reader, sc *object) any {
	fs := source.FilesystemConfig{PageSize: DefaultPageSize, WorldSize: 1}
	r.str(sc, "root_path", &fs.RootPath, true)
	r.integer(sc, "page_size", &fs.PageSize, 1)
	r.boolean(sc, "random_sampling", &fs.RandomSampling)
	seed := 0
	r.integer(sc, "seed", &seed, math.MinInt)
	fs.Seed = int64(seed)
	r.rankAndWorld(sc, &fs.Rank, &fs.WorldSize)
	if r.err == nil {
		st, err := os.Stat(fs.RootPath)
		switch {
		case err != nil:
			r.fail("source_config.root_path", err.Error())
		case !st.IsDir():
			r.fail("source_config.root_path", fmt.Sprintf("%q is not a directory", fs.RootPath))
		}
	}
	return fs
}
