package source

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// dataroomFileParallelism bounds the files of one sample downloaded at once.
const dataroomFileParallelism = 4

type dataroomFile struct {
	name string // latent type; "" for the main image
	kind int    // latentBytes, latentMask or latentImage (ignored for the main image)
	main bool
	url  string
}

// Fetch downloads the files of one result: the image, then its latents classified as masks,
// additional images or raw bytes. The files of a sample are downloaded concurrently over the shared
// keep-alive connections; the HTTP status is checked (an error page is never taken for a file), a
// transient failure is retried with backoff, and any file that cannot be had fails the sample.
func (d *Dataroom) Fetch(ctx context.Context, it Item) (*Raw, error) {
	rec, ok := it.Ref.(*dataroomRecord)
	if !ok || rec == nil {
		return nil, errors.New("dataroom: item without its record")
	}
	var files []dataroomFile
	if d.cfg.RequireImages {
		files = append(files, dataroomFile{main: true, url: rec.ImageURL})
	}
	for _, l := range rec.Latents {
		if d.wantLats != nil && !d.wantLats[l.Type] {
			continue // a server that ignored return_latents: do not download what was not asked for
		}
		files = append(files, dataroomFile{name: l.Type, kind: l.kind(), url: l.URL})
	}
	data, err := d.downloadAll(ctx, files)
	if err != nil {
		return nil, err
	}
	raw := &Raw{Meta: rec.Meta, NoImage: !d.cfg.RequireImages}
	for i, f := range files {
		switch {
		case f.main:
			if len(data[i]) == 0 {
				return nil, fmt.Errorf("dataroom: GET %s: %w", redactURL(f.url), ErrEmpty)
			}
			raw.Image = data[i]
		case f.kind == latentImage:
			raw.AdditionalImages = append(raw.AdditionalImages, Named{f.name, data[i]})
		case f.kind == latentMask:
			raw.Masks = append(raw.Masks, Named{f.name, data[i]})
		default:
			raw.Bytes = append(raw.Bytes, Named{f.name, data[i]})
		}
	}
	return raw, nil
}

// downloadAll fetches every file, a few at a time; the first failure cancels the others.
func (d *Dataroom) downloadAll(ctx context.Context, files []dataroomFile) ([][]byte, error) {
	data := make([][]byte, len(files))
	errs := make([]error, len(files))
	one := func(ctx context.Context, i int) {
		f := files[i]
		data[i], errs[i] = d.get(ctx, f.url, false, redactURL(f.url), nil)
		if errs[i] != nil && !f.main {
			errs[i] = fmt.Errorf("latent %q: %w", f.name, errs[i])
		}
	}
	if len(files) == 1 {
		one(ctx, 0)
		return data, errs[0]
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, dataroomFileParallelism)
	var wg sync.WaitGroup
	for i := range files {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			if ctx.Err() != nil {
				errs[i] = ctx.Err()
				return
			}
			one(ctx, i)
			if errs[i] != nil {
				cancel()
			}
		}(i)
	}
	wg.Wait()
	var first error
	for _, err := range errs {
		if err == nil {
			continue
		}
		if first == nil || (errors.Is(first, context.Canceled) && !errors.Is(err, context.Canceled)) {
			first = err
		}
	}
	return data, first
}

// Close closes the idle keep-alive connections of the source's HTTP client (they would otherwise
// stay open until the idle timeout, 90 s). The source must not be used after.
func (d *Dataroom) Close() error {
	d.client.CloseIdleConnections()
	return nil
}
