package webdataset

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/datago-dev/datago/internal/source/httpretry"
)

// deadAfter is how many shards must fail, all the same way and with nothing read from any shard,
// before the listing concludes that no shard can work (a wrong host, no network, a missing token).
// With the defaults (concurrent_downloads 8, max_retries 5) the first 8 shards are tried in parallel,
// each with about 8 s of retries, so a dead list ends in about 10 s instead of after every shard.
const deadAfter = 8

// statusError is an HTTP error status, kept typed so that failures can be compared by cause.
type statusError struct {
	code   int
	status string
}

func (e *statusError) Error() string { return "HTTP " + e.status }

// deadCheck watches the first shards of a listing. Once the first deadAfter of them (all, when
// there are fewer) failed before giving a single sample, with one and the same cause, and no shard
// gave anything, the listing ends with an error naming the cause and those shards. Any success, or
// two causes, and it stands aside: a list where some shards fail still delivers what the others hold.
type deadCheck struct {
	mu     sync.Mutex
	need   int
	off    bool // a shard worked, or the failures differ
	cause  string
	failed map[int]string // index in the reading order -> location, for the first need shards
}

func newDeadCheck(shards int) *deadCheck {
	return &deadCheck{need: min(shards, deadAfter), failed: map[int]string{}}
}

// worked records that a shard gave samples.
func (d *deadCheck) worked() {
	d.mu.Lock()
	d.off = true
	d.mu.Unlock()
}

// fail records a shard that failed before giving any sample; it returns the listing's error once
// the list is judged dead.
func (d *deadCheck) fail(index int, shard string, err error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.off || index >= d.need {
		return nil
	}
	cause := failureCause(err)
	if cause == "" || (d.cause != "" && cause != d.cause) {
		d.off = true
		return nil
	}
	d.cause = cause
	d.failed[index] = httpretry.RedactURL(shard)
	if len(d.failed) < d.need {
		return nil
	}
	d.off = true // report once
	shown := []string{d.failed[0], d.failed[1], d.failed[2]}[:min(3, d.need)]
	more := ""
	if d.need > len(shown) {
		more = ", ..."
	}
	return fmt.Errorf("webdataset: the first %d shards all failed with %s, and none delivered a sample "+
		"(%s%s): check source_config.url, the network and the credentials", d.need, cause,
		strings.Join(shown, ", "), more)
}

// failureCause names the kind of a shard's failure, or "" when it is not one that says the whole
// list is unreachable (a corrupt shard, a timeout in the middle of a body, ...).
func failureCause(err error) string {
	var dns *net.DNSError
	var status *statusError
	switch {
	case errors.As(err, &dns):
		return fmt.Sprintf("the host %q cannot be resolved (%s)", dns.Name, dns.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host or network unreachable"
	case errors.As(err, &status) && status.code >= 400 && status.code < 500:
		return "HTTP " + status.status
	case errors.Is(err, os.ErrNotExist):
		return "no such file"
	case errors.Is(err, os.ErrPermission):
		return "permission denied"
	}
	return ""
}
