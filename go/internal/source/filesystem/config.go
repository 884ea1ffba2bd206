package filesystem

import (
	"fmt"
	"math"
	"os"

	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/storage"
)

// DefaultPageSize is the default source_config.page_size.
const DefaultPageSize = 512

// Kind is "source_type": "filesystem".
var Kind = source.Kind{Names: []string{"filesystem", "file"}, Parse: parse}

func parse(r *confread.Reader, sc *confread.Object) source.Config {
	fs := Config{PageSize: DefaultPageSize, WorldSize: 1}
	r.Str(sc, "root_path", &fs.RootPath, true)
	r.Integer(sc, "page_size", &fs.PageSize, 1)
	r.Boolean(sc, "random_sampling", &fs.RandomSampling)
	seed := 0
	_, fs.SeedGiven = sc.Map()["seed"]
	r.Integer(sc, "seed", &seed, math.MinInt)
	fs.Seed = int64(seed)
	r.RankAndWorld(sc, &fs.Rank, &fs.WorldSize)
	fs.Storage = storage.Parse(r, sc)
	if !r.Failed() && storage.Remote(fs.RootPath) {
		if err := storage.Check(fs.RootPath); err != nil {
			r.Fail(sc.Key("root_path"), err.Error())
		}
		return fs
	}
	if !r.Failed() {
		st, err := os.Stat(fs.RootPath)
		switch {
		case err != nil:
			r.Fail(sc.Key("root_path"), err.Error())
		case !st.IsDir():
			r.Fail(sc.Key("root_path"), fmt.Sprintf("%q is not a directory", fs.RootPath))
		}
	}
	return fs
}
