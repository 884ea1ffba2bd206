package dataroom

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/datago-dev/datago/internal/source"
	"github.com/datago-dev/datago/internal/source/httpretry"
)

// fileParallelism bounds the files of one sample downloaded at once.
const fileParallelism = 4

type file struct {
	name string // latent type; "" for the main image
	kind int    // latentBytes, latentMask or latentImage (ignored for the main image)
	main bool
	url  string
}

// Fetch downloads the files of one result: the image, then its latents classified as masks,
// additional images or raw bytes. The files of a sample are downloaded concurrently over the shared
// keep-alive connections; the HTTP status is checked (an error page is never taken for a file), a
// transient failure is retried with backoff, and any file that cannot be had fails the sample.
func (d *Source) Fetch(ctx context.Context, it source.Item) (*source.Raw, error) {
	rec, ok := it.Ref.(*Record)
	if !ok || rec == nil {
		return nil, errors.New("dataroom: item without its record")
	}
	var files []file
	if d.cfg.RequireImages {
		files = append(files, file{main: true, url: rec.ImageURL})
	}
	for _, l := range rec.Latents {
		if d.wantLats != nil && !d.wantLats[l.Type] {
			continue // a server that ignored return_latents: do not download what was not asked for
		}
		files = append(files, file{name: l.Type, kind: l.kind(), url: l.URL})
	}
	data, err := d.downloadAll(ctx, files)
	if err != nil {
		return nil, err
	}
	raw := &source.Raw{Meta: rec.Meta, NoImage: !d.cfg.RequireImages}
	for i, f := range files {
		switch {
		case f.main:
			if len(data[i]) == 0 {
				return nil, fmt.Errorf("dataroom: GET %s: %w", httpretry.RedactURL(f.url), source.ErrEmpty)
			}
			raw.Image = data[i]
		case f.kind == latentImage:
			raw.AdditionalImages = append(raw.AdditionalImages, source.Named{Name: f.name, Data: data[i]})
		case f.kind == latentMask:
			raw.Masks = append(raw.Masks, source.Named{Name: f.name, Data: data[i]})
		default:
			raw.Bytes = append(raw.Bytes, source.Named{Name: f.name, Data: data[i]})
		}
	}
	return raw, nil
}

// downloadAll fetches every file, fileParallelism at a time; the first failure cancels the others.
// A panic in a download goes up through Fetch to the pipeline's fetcher, which skips the sample
// as internal_error, as for a panic in Fetch itself: the group's goroutines never outlive the call.
func (d *Source) downloadAll(ctx context.Context, files []file) ([][]byte, error) {
	data := make([][]byte, len(files))
	one := func(ctx context.Context, i int) error {
		f := files[i]
		d.points.Hit("dataroom.download")
		var err error
		data[i], err = d.get(ctx, f.url, false, httpretry.RedactURL(f.url), nil)
		if err != nil && !f.main {
			err = fmt.Errorf("latent %q: %w", f.name, err)
		}
		return err
	}
	if len(files) == 1 {
		return data, one(ctx, 0)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(fileParallelism)
	var panicked atomic.Pointer[panicValue]
	for i := range files {
		g.Go(func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					panicked.CompareAndSwap(nil, &panicValue{r, debug.Stack()})
					err = errPanicked
				}
			}()
			return one(gctx, i)
		})
	}
	err := g.Wait()
	if p := panicked.Load(); p != nil {
		panic(fmt.Sprintf("%v\n(in a download goroutine)\n%s", p.value, p.stack))
	}
	return data, err
}

// panicValue is a download's panic, raised again in the goroutine that called Fetch.
type panicValue struct {
	value any
	stack []byte
}

var errPanicked = errors.New("a download panicked")

// Close closes the idle keep-alive connections of the source's HTTP client (they would otherwise
// stay open until the idle timeout, 90 s). The source must not be used after.
func (d *Source) Close() error {
	d.client.CloseIdleConnections()
	return nil
}
