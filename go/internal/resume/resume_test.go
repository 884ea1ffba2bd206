package resume

import (
	"encoding/json"
	"errors"
	"math/rand"
	"reflect"
	"testing"

	"github.com/datago-dev/datago/internal/confread"
)

func parseJSON(t *testing.T, text string) (*State, error) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(text), &m); err != nil {
		t.Fatal(err)
	}
	st, cerr := Parse(m)
	if cerr != nil {
		return nil, cerr
	}
	return st, nil
}

func TestParseRefusesStatesThatCannotBeOne(t *testing.T) {
	for text, key := range map[string]string{
		`{"version": 2, "epoch": 0, "done": []}`:                                                   "resume_state.version",
		`{"version": 1, "epoch": -1, "done": []}`:                                                  "resume_state.epoch",
		`{"version": 1, "epoch": 0, "done": [], "extra": 1}`:                                       "resume_state",
		`{"version": 1, "epoch": 2, "done": [{"epoch": 1, "below": 0}]}`:                           "resume_state.done[0]",
		`{"version": 1, "epoch": 0, "done": [{"epoch": 1, "below": 3}, {"epoch": 1, "below": 4}]}`: "resume_state.done[1]",
		`{"version": 1, "epoch": 0, "done": [{"epoch": 0, "below": 5, "extra": [3]}]}`:             "resume_state.done[0].extra",
	} {
		_, err := parseJSON(t, text)
		var ce *confread.Error
		if !errors.As(err, &ce) {
			t.Fatalf("%s: want a config error, got %v", text, err)
		}
		if ce.Key != key {
			t.Fatalf("%s: key %q, want %q (%v)", text, ce.Key, key, err)
		}
	}
}

// Marking items in any order gives a state that, parsed back into a new tracker, says exactly the
// same items are done: prefix plus exceptions, and complete epochs dropped from the front.
func TestTrackerStateRoundTrips(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for trial := 0; trial < 50; trial++ {
		tr := NewTracker(nil)
		totals := []int64{int64(1 + rng.Intn(40)), int64(1 + rng.Intn(40))}
		done := map[[2]int64]bool{}
		for e, total := range totals {
			tr.Listed(e, total)
			for _, seq := range rng.Perm(int(total))[:rng.Intn(int(total)+1)] {
				tr.Mark(e, int64(seq))
				done[[2]int64{int64(e), int64(seq)}] = true
			}
		}
		raw, err := json.Marshal(tr.State())
		if err != nil {
			t.Fatal(err)
		}
		st, perr := parseJSON(t, string(raw))
		if perr != nil {
			t.Fatalf("a tracker's own state refused: %v (%s)", perr, raw)
		}
		again := NewTracker(st)
		for e, total := range totals {
			for seq := int64(0); seq < total; seq++ {
				want := done[[2]int64{int64(e), seq}]
				if got := again.IsDone(e, seq); got != want {
					t.Fatalf("trial %d: epoch %d seq %d done=%v, want %v (state %s)", trial, e, seq, got, want, raw)
				}
			}
		}
		if !reflect.DeepEqual(again.State(), tr.State()) {
			t.Fatalf("state changed through a round trip: %+v vs %+v", again.State(), tr.State())
		}
	}
}
