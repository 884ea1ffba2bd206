package dataroom

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/datago-dev/datago/internal/confread"
	"github.com/datago-dev/datago/internal/source"
)

func TestCatalogListsEveryPartitionWithSizes(t *testing.T) {
	f := newFakeDataroom(t, 11)
	f.onPage = func(_ int64, w http.ResponseWriter, r *http.Request) bool {
		page := f.page(r)
		for i, rec := range page["results"].([]map[string]any) {
			switch id := rec["id"].(string); {
			case id == "img003":
				rec["width"], rec["height"] = "wide", 5 // the wrong type: no size
			case i%2 == 0:
				rec["width"], rec["height"] = 100+i, 50
			}
		}
		json.NewEncoder(w).Encode(page)
		return true
	}
	cfg := f.config()
	cfg.Rank, cfg.WorldSize = 2, 3
	d := mustDataroom(t, cfg)
	skipped := map[string]int{}
	items, keys, err := d.Catalog(context.Background(), func(_, reason string, _ error) { skipped[reason]++ })
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(keys, ",") != strings.Join(f.ids, ",") || len(items) != len(keys) || len(skipped) != 0 {
		t.Fatalf("keys %v, skipped %v", keys, skipped)
	}
	for _, q := range f.queries {
		if strings.Contains(q, "partition") || !strings.Contains(q, "fields=attributes,image_direct_url,source,tags,width,height") {
			t.Fatalf("query %q", q)
		}
	}
	if r, w := d.Topology(); r != 2 || w != 3 {
		t.Fatal("topology")
	}
	sized := 0
	for _, it := range items {
		w, h, ok := d.Size(it)
		if ok {
			sized++
			if h != 50 || w < 100 {
				t.Fatalf("%s: %dx%d", it.ID, w, h)
			}
		}
		if it.ID == "img003" && ok {
			t.Fatal("a size of the wrong type is no size")
		}
	}
	if sized == 0 || sized == len(items) {
		t.Fatalf("%d of %d sized", sized, len(items))
	}
	// The streaming path still asks for its own fields, with the partition.
	f.queries = nil
	if res := listAll(t, d); res.err != nil || !strings.Contains(f.queries[0], "partitions_count=3&partition=2") || strings.Contains(f.queries[0], "width") {
		t.Fatalf("%v %q", res.err, f.queries)
	}
}

func TestCatalogRefusesRandomSampling(t *testing.T) {
	f := newFakeDataroom(t, 3)
	cfg := f.config()
	cfg.RandomSampling = true
	_, _, err := mustDataroom(t, cfg).Catalog(context.Background(), func(string, string, error) {})
	var ce *confread.Error
	if !errors.As(err, &ce) || ce.Key != "source_config.random_sampling" {
		t.Fatalf("got %v", err)
	}
	if f.pageReqs.Load() != 0 {
		t.Fatal("no request before the refusal")
	}
	var _ source.Sized = (*Source)(nil)
}
