// Package az is the storage backend of az://container/path URLs, Azure Blob Storage, through the
// Azure SDK for Go (azblob). The account and its credentials come from, in order:
// AZURE_STORAGE_CONNECTION_STRING; AZURE_STORAGE_ACCOUNT with AZURE_STORAGE_KEY (shared key) or
// AZURE_STORAGE_SAS_TOKEN; AZURE_STORAGE_ACCOUNT with the default Azure credential chain
// (environment service principal, workload identity, managed identity, Azure CLI), whose tokens
// the SDK refreshes before they expire.
package az

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"

	"github.com/datago-dev/datago/internal/source/httpretry"
	sblob "github.com/datago-dev/datago/internal/storage/blob"
)

// Options are the transport settings the source gives every backend, and the endpoint override.
type Options struct {
	Timeout     time.Duration
	MaxRetries  int
	EndpointURL string // source_config.storage.endpoint_url: the account's blob endpoint (Azurite)
}

// Backend reads az:// URLs with one SDK client.
type Backend struct {
	client *azblob.Client
}

// New builds the client from the environment; it sends nothing.
func New(o Options) (*Backend, error) {
	opts := &azblob.ClientOptions{ClientOptions: policy.ClientOptions{
		Retry: policy.RetryOptions{MaxRetries: int32(o.MaxRetries), RetryDelay: 250 * time.Millisecond, MaxRetryDelay: 10 * time.Second},
		// The SDK logs request URLs, SAS signatures included, only when a logger listens: none does.
	}}
	if o.Timeout > 0 {
		opts.Retry.TryTimeout = 0 // a body is streamed for as long as it takes; the stream's watchdog stalls
	}
	account := os.Getenv("AZURE_STORAGE_ACCOUNT")
	endpoint := o.EndpointURL
	if endpoint == "" && account != "" {
		endpoint = fmt.Sprintf("https://%s.blob.core.windows.net/", account)
	}
	var c *azblob.Client
	var err error
	switch {
	case os.Getenv("AZURE_STORAGE_CONNECTION_STRING") != "":
		c, err = azblob.NewClientFromConnectionString(os.Getenv("AZURE_STORAGE_CONNECTION_STRING"), opts)
	case account == "":
		return nil, errors.New("az: set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT (with AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN or an Azure identity)")
	case os.Getenv("AZURE_STORAGE_KEY") != "":
		var cred *azblob.SharedKeyCredential
		if cred, err = azblob.NewSharedKeyCredential(account, os.Getenv("AZURE_STORAGE_KEY")); err == nil {
			c, err = azblob.NewClientWithSharedKeyCredential(endpoint, cred, opts)
		}
	case os.Getenv("AZURE_STORAGE_SAS_TOKEN") != "":
		c, err = azblob.NewClientWithNoCredential(strings.TrimRight(endpoint, "/")+"/?"+strings.TrimPrefix(os.Getenv("AZURE_STORAGE_SAS_TOKEN"), "?"), opts)
	default:
		var cred *azidentity.DefaultAzureCredential
		if cred, err = azidentity.NewDefaultAzureCredential(nil); err == nil {
			c, err = azblob.NewClient(endpoint, cred, opts)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("az: %s", scrub(err.Error()))
	}
	return &Backend{client: c}, nil
}

// Split returns the container and path of an az:// URL.
func Split(u string) (container, path string, err error) {
	rest, ok := strings.CutPrefix(u, "az://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an az:// URL", u)
	}
	container, path, _ = strings.Cut(rest, "/")
	if container == "" {
		return "", "", fmt.Errorf("%q names no container (az://container/path)", u)
	}
	return container, path, nil
}

// List pages through List Blobs (flat), whose order is the names' lexicographic order.
func (b *Backend) List(ctx context.Context, prefix string, fn func(sblob.Object) bool) error {
	container, key, err := Split(prefix)
	if err != nil {
		return err
	}
	p := b.client.NewListBlobsFlatPager(container, &azblob.ListBlobsFlatOptions{Prefix: &key})
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return wrap("list", prefix, err)
		}
		for _, it := range page.Segment.BlobItems {
			if it.Name == nil || strings.HasSuffix(*it.Name, "/") {
				continue
			}
			o := sblob.Object{URL: "az://" + container + "/" + *it.Name, Key: strings.TrimPrefix(*it.Name, key)}
			if pr := it.Properties; pr != nil {
				if pr.ContentLength != nil {
					o.Size = *pr.ContentLength
				}
				if pr.ETag != nil {
					o.Version = string(*pr.ETag)
				}
			}
			if !fn(o) {
				return nil
			}
		}
	}
	return nil
}

// Open downloads from off, conditional on the ETag when version is set.
func (b *Backend) Open(ctx context.Context, u string, off int64, version string) (io.ReadCloser, sblob.Info, error) {
	container, key, err := Split(u)
	if err != nil {
		return nil, sblob.Info{}, err
	}
	o := &azblob.DownloadStreamOptions{Range: blob.HTTPRange{Offset: off}}
	if version != "" {
		etag := azcore.ETag(version)
		o.AccessConditions = &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfMatch: &etag}}
	}
	resp, err := b.client.DownloadStream(ctx, container, key, o)
	if err != nil {
		return nil, sblob.Info{}, wrap("read", u, err)
	}
	info := sblob.Info{Size: -1}
	if resp.ETag != nil {
		info.Version = string(*resp.ETag)
	}
	if cr := resp.ContentRange; cr != nil {
		if _, total, ok := strings.Cut(*cr, "/"); ok {
			if n, err := strconv.ParseInt(total, 10, 64); err == nil {
				info.Size = n
			}
		}
	} else if resp.ContentLength != nil {
		info.Size = off + *resp.ContentLength
	}
	return resp.Body, info, nil
}

// Retryable: the SDK retried 408, 429 and 5xx already; a broken connection is worth another round.
func (b *Backend) Retryable(err error) bool {
	var be *sblob.Error
	if errors.As(err, &be) {
		return be.Code == "" || be.Status >= 500 || be.Status == http.StatusTooManyRequests
	}
	return true
}

// wrap keeps the service's error code and status, never the SDK's message: it quotes the request
// URL, and with it a SAS signature.
func wrap(op, u string, err error) error {
	e := &sblob.Error{Provider: "az", URL: u, Op: op}
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		e.Code, e.Status = re.ErrorCode, re.StatusCode
		if re.RawResponse != nil {
			// azcore's retry policy waits a Retry-After up to MaxRetryDelay and gives up on a longer
			// one; the stream then waits it, up to httpretry.MaxRetryAfter.
			e.RetryAfter = httpretry.RetryAfter(re.RawResponse.Header)
		}
		if e.Code == "" {
			e.Code = http.StatusText(re.StatusCode)
		}
		switch {
		case re.ErrorCode == "BlobNotFound", re.StatusCode == http.StatusNotFound && re.ErrorCode == "":
			e.NotFound = true
		case re.ErrorCode == "ConditionNotMet", re.StatusCode == http.StatusPreconditionFailed:
			e.Changed = true
		}
		return e
	}
	e.Err = errors.New(scrub(err.Error()))
	return e
}

// scrub drops URL queries (SAS signatures) from a message.
func scrub(s string) string {
	var out []string
	for _, f := range strings.Fields(s) {
		if i := strings.Index(f, "?"); i >= 0 && strings.Contains(f, "://") {
			f = f[:i] + "?…"
		}
		if strings.Contains(strings.ToLower(f), "sig=") {
			f = "…"
		}
		out = append(out, f)
	}
	return strings.Join(out, " ")
}
