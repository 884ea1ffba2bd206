package resume

import (
	"encoding/json"
	"strings"
	"testing"
)

func part(t *testing.T, plan Plan, world, share int, done ...int64) State {
	t.Helper()
	tr := NewTracker(nil)
	tr.Planned(plan, world, share, nil)
	for _, d := range done {
		tr.Mark(0, d)
	}
	return tr.State()
}

// roundTrip is what a state goes through between two clients: JSON, then Parse.
func roundTrip(t *testing.T, st State) (*State, error) {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	got, cerr := Parse(m)
	if cerr != nil {
		return nil, cerr
	}
	return got, nil
}

func TestResolveRefusesWhatCannotBelong(t *testing.T) {
	plan := Plan{Items: 100, Digest: "00000000000000aa", Seed: 3, Shuffle: true, EqualSteps: "pad"}
	set := State{Version: VersionPlanned, Parts: []State{part(t, plan, 2, 0, 0, 1, 2), part(t, plan, 2, 1, 0, 5)}}
	parsed, err := roundTrip(t, set)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want Plan
		msg  string
	}{
		{"listing", Plan{Items: 99, Digest: "00000000000000bb", Seed: 3, Shuffle: true, EqualSteps: "pad"}, "another dataset or listing (100 items"},
		{"seed", Plan{Items: 100, Digest: "00000000000000aa", Seed: 4, Shuffle: true, EqualSteps: "pad"}, "seed 3, this configuration has seed 4"},
		{"policy", Plan{Items: 100, Digest: "00000000000000aa", Seed: 3, Shuffle: true, EqualSteps: "drop"}, `equal_steps "pad"`},
		{"batch", Plan{Items: 100, Digest: "00000000000000aa", Seed: 3, Shuffle: true, EqualSteps: "pad", BatchSize: 8}, "batch_size 0, this configuration has 8"},
	} {
		if _, err := Resolve(parsed, tc.want, 2, 0); err == nil || !strings.Contains(err.Msg, tc.msg) || !strings.HasPrefix(err.Key, "resume_state") {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.msg)
		}
	}
	// One share's state continues the same topology, but cannot seed another one.
	single, _ := roundTrip(t, set.Parts[1])
	if got, err := Resolve(single, plan, 2, 1); err != nil || got.Done[0].Below != 1 || got.Done[0].Extra[0] != 5 {
		t.Fatalf("same topology: %+v, %v", got, err)
	}
	if _, err := Resolve(single, plan, 3, 0); err == nil || !strings.Contains(err.Msg, "shares [0] are missing") {
		t.Fatalf("another topology from one share: %v", err)
	}
	if _, err := Resolve(single, plan, 2, 0); err == nil || !strings.Contains(err.Msg, "no state for share 0 of 2") {
		t.Fatalf("another share's state: %v", err)
	}
	got, cerr := Resolve(parsed, plan, 3, 2)
	if cerr != nil || got.World != 3 || got.Share != 2 || len(got.Prior) != 1 || len(got.Prior[0].Gens) != 1 || got.Prior[0].Gens[0].World != 2 {
		t.Fatalf("merge: %+v, %v", got, cerr)
	}
	// Edited, truncated, unversioned.
	edited := set.Parts[0]
	edited.Done[0].Below = 50
	if _, err := roundTrip(t, edited); err == nil || !strings.Contains(err.Error(), "resume_state.check") {
		t.Fatalf("edited: %v", err)
	}
	truncated := set.Parts[0]
	truncated.Plan = nil
	if _, err := roundTrip(t, truncated); err == nil || !strings.Contains(err.Error(), "resume_state.plan") {
		t.Fatalf("truncated: %v", err)
	}
	v1 := NewTracker(nil).State()
	if st, _ := roundTrip(t, v1); st == nil {
		t.Fatal("a version 1 state no longer parses")
	} else if _, err := Resolve(st, plan, 2, 0); err == nil || !strings.Contains(err.Msg, "without equal_steps") {
		t.Fatalf("v1 state in a planned run: %v", err)
	}
}

// TestStateSizeAtAMillion: the state of a share at 1,000,000 samples per epoch is a prefix and the few
// slots done out of order (the pipeline's in-flight window), not a list of ids: a few hundred bytes,
// and after a topology change (8 shares -> 4) one entry per old share more.
func TestStateSizeAtAMillion(t *testing.T) {
	plan := Plan{Items: 1_000_000, Digest: "0123456789abcdef", Seed: 42, Shuffle: true, EqualSteps: "pad", BatchSize: 32, Buckets: "fedcba9876543210"}
	var parts []State
	for s := 0; s < 8; s++ {
		tr := NewTracker(nil)
		tr.Planned(plan, 8, s, nil)
		for k := int64(0); k < 62_500; k++ {
			tr.Mark(0, k)
		}
		for k := int64(62_501); k < 62_501+128; k += 2 { // 64 done out of order
			tr.Mark(0, k)
		}
		parts = append(parts, tr.State())
	}
	one, _ := json.Marshal(parts[3])
	all, _ := json.Marshal(State{Version: VersionPlanned, Parts: parts})
	resumed, err := Resolve(&State{Version: VersionPlanned, Parts: parts}, plan, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	tr := NewTracker(resumed)
	tr.Planned(plan, 4, 1, resumed.Prior)
	for k := int64(0); k < 1000; k++ {
		tr.Mark(0, k)
	}
	after, _ := json.Marshal(tr.State())
	t.Logf("bytes: one share %d, 8 shares gathered %d, one share after 8 -> 4 %d", len(one), len(all), len(after))
	if len(one) > 1200 || len(after) > 1200+8*1000 {
		t.Fatalf("state too large: %d, %d bytes", len(one), len(after))
	}
}
