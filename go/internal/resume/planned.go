package resume

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"
	"slices"
	"sort"

	"github.com/datago-dev/datago/internal/confread"
)

// checkPlanned checks a version 2 state: one share's state, or a set of them (Parts).
func checkPlanned(st *State) *confread.Error {
	if st.Parts == nil {
		if st.Plan == nil && st.World == 0 {
			return &confread.Error{Key: "resume_state.version", Msg: fmt.Sprintf("%d is a planned state's (equal_steps, bucket_per_step), but this state has no plan, world nor parts", VersionPlanned)}
		}
		return checkPart(st, "resume_state")
	}
	if st.Plan != nil || st.World != 0 || st.Prior != nil || st.Done != nil || st.Check != "" {
		return &confread.Error{Key: "resume_state.parts", Msg: "a set of states has nothing beside version and parts"}
	}
	if len(st.Parts) == 0 {
		return &confread.Error{Key: "resume_state.parts", Msg: "is empty"}
	}
	for i := range st.Parts {
		part := &st.Parts[i]
		key := fmt.Sprintf("resume_state.parts[%d]", i)
		if part.Version != VersionPlanned || part.Parts != nil {
			return &confread.Error{Key: key, Msg: fmt.Sprintf("must be one share's version %d state", VersionPlanned)}
		}
		if err := checkPart(part, key); err != nil {
			return err
		}
	}
	return nil
}

func checkPart(st *State, key string) *confread.Error {
	switch {
	case st.Plan == nil:
		return &confread.Error{Key: key + ".plan", Msg: "is required in a version 2 state"}
	case st.World < 1:
		return &confread.Error{Key: key + ".world", Msg: fmt.Sprintf("must be >= 1, got %d", st.World)}
	case st.Share < 0 || st.Share >= st.World:
		return &confread.Error{Key: key + ".share", Msg: fmt.Sprintf("must be in [0, %d), got %d", st.World, st.Share)}
	case st.Check != checksum(*st):
		return &confread.Error{Key: key + ".check", Msg: "does not match the state: it was edited or truncated"}
	}
	if err := checkDone(st, key); err != nil {
		return err
	}
	for i, pe := range st.Prior {
		for j, g := range pe.Gens {
			if g.World < 1 {
				return &confread.Error{Key: fmt.Sprintf("%s.prior[%d].gens[%d].world", key, i, j), Msg: "must be >= 1"}
			}
			for _, d := range g.Done {
				if d.Share < 0 || d.Share >= g.World || d.Below < 0 {
					return &confread.Error{Key: fmt.Sprintf("%s.prior[%d].gens[%d].done", key, i, j), Msg: "inconsistent with its world"}
				}
			}
		}
	}
	return nil
}

// checksum is a digest of st without its check and parts, nor the seed the client adds to every
// state (a planned state's own plan carries the seed it was made with).
func checksum(st State) string {
	st.Check, st.Parts, st.Seed = "", nil, nil
	b, _ := json.Marshal(st)
	h := fnv.New64a()
	h.Write(b)
	return fmt.Sprintf("%016x", h.Sum64())
}

// Resolve returns the state a client that is share of world starts from, given resume_state st
// (one share's state, or a set) and the plan of its configuration. With the topology st was taken
// with, the share continues its own state (the other shares' are not needed). With another
// topology, every share's state is needed: their done slots become one more generation of each
// epoch under way, and the share starts that epoch afresh over what is left. A state of another
// plan is refused, saying what differs.
func Resolve(st *State, want Plan, world, share int) (*State, *confread.Error) {
	if st.Version != VersionPlanned {
		return nil, &confread.Error{Key: "resume_state", Msg: "was taken without equal_steps (a per-rank state): resume it with the configuration it was taken with"}
	}
	parts := st.Parts
	if parts == nil {
		parts = []State{*st}
	}
	byShare := map[int]*State{}
	for i := range parts {
		p := &parts[i]
		key := "resume_state"
		if st.Parts != nil {
			key = fmt.Sprintf("resume_state.parts[%d]", i)
		}
		if msg := planDiff(*p.Plan, want); msg != "" {
			return nil, &confread.Error{Key: key, Msg: msg}
		}
		if p.World != parts[0].World {
			return nil, &confread.Error{Key: key + ".world", Msg: fmt.Sprintf("%d, but parts[0] has %d: the parts come from different topologies", p.World, parts[0].World)}
		}
		if byShare[p.Share] != nil {
			return nil, &confread.Error{Key: key + ".share", Msg: fmt.Sprintf("share %d appears twice", p.Share)}
		}
		byShare[p.Share] = p
	}
	// What earlier generations did, by epoch. A part leaves out the epochs it completed; the others
	// must agree on the rest.
	prior := map[int][]PriorGen{}
	for i, p := range parts {
		for _, pe := range p.Prior {
			if got, ok := prior[pe.Epoch]; ok && !reflect.DeepEqual(got, pe.Gens) {
				return nil, &confread.Error{Key: fmt.Sprintf("resume_state.parts[%d].prior", i), Msg: "differs from another part's: the parts come from different checkpoints"}
			}
			prior[pe.Epoch] = pe.Gens
		}
	}
	old := parts[0].World
	if old == world {
		p := byShare[share]
		if p == nil {
			return nil, &confread.Error{Key: "resume_state", Msg: fmt.Sprintf("has no state for share %d of %d (it has shares %v): pass every share's state", share, world, sortedKeys(byShare))}
		}
		out := *p
		out.Parts, out.Check = nil, ""
		return &out, nil
	}
	if len(byShare) != old {
		var missing []int
		for s := 0; s < old; s++ {
			if byShare[s] == nil {
				missing = append(missing, s)
			}
		}
		return nil, &confread.Error{Key: "resume_state", Msg: fmt.Sprintf("the topology changed (%d shares, now %d): resuming needs every share's state, shares %v are missing", old, world, missing)}
	}
	first := parts[0].Epoch
	epochs := map[int]bool{}
	for _, p := range parts {
		first = min(first, p.Epoch)
	}
	for _, p := range parts {
		for e := first; e < p.Epoch; e++ {
			epochs[e] = true
		}
		for _, d := range p.Done {
			epochs[d.Epoch] = true
		}
	}
	for e := range prior {
		if e >= first {
			epochs[e] = true
		}
	}
	list := make([]int, 0, len(epochs))
	for e := range epochs {
		list = append(list, e)
	}
	sort.Ints(list)
	out := &State{Version: VersionPlanned, Epoch: first, Done: []EpochState{}, Plan: parts[0].Plan, World: world, Share: share}
	for _, e := range list {
		gens := slices.Clone(prior[e])
		g := PriorGen{World: old}
		for s := 0; s < old; s++ {
			p := byShare[s]
			if p.Epoch > e {
				g.Done = append(g.Done, ShareDone{Share: s, Full: true})
				continue
			}
			for _, d := range p.Done {
				if d.Epoch == e {
					g.Done = append(g.Done, ShareDone{Share: s, Below: d.Below, Extra: slices.Clone(d.Extra)})
				}
			}
		}
		out.Prior = append(out.Prior, PriorEpoch{Epoch: e, Gens: append(gens, g)})
	}
	return out, nil
}

// planDiff says how a state's plan differs from the configuration's ("" when it does not).
func planDiff(got, want Plan) string {
	switch {
	case got.Items != want.Items || got.Digest != want.Digest:
		return fmt.Sprintf("was taken over another dataset or listing (%d items, digest %s; this configuration lists %d items, digest %s)",
			got.Items, got.Digest, want.Items, want.Digest)
	case got.Shuffle != want.Shuffle:
		return fmt.Sprintf("was taken with shuffling %s, this configuration has it %s", onOff(got.Shuffle), onOff(want.Shuffle))
	case got.Shuffle && got.Seed != want.Seed:
		return fmt.Sprintf("was taken with seed %d, this configuration has seed %d", got.Seed, want.Seed)
	case got.EqualSteps != want.EqualSteps:
		return fmt.Sprintf("was taken with equal_steps %q, this configuration has %q", got.EqualSteps, want.EqualSteps)
	case got.BatchSize != want.BatchSize:
		return fmt.Sprintf("was taken with batch_size %d, this configuration has %d", got.BatchSize, want.BatchSize)
	case got.BucketPerStep != want.BucketPerStep:
		return fmt.Sprintf("was taken with bucket_per_step %v, this configuration has %v", got.BucketPerStep, want.BucketPerStep)
	case got.DropLast != want.DropLast:
		return fmt.Sprintf("was taken with drop_last %v, this configuration has %v", got.DropLast, want.DropLast)
	case got.Buckets != want.Buckets:
		return fmt.Sprintf("was taken with other image buckets (digest %s; now %s): image_config or the images changed", got.Buckets, want.Buckets)
	}
	return ""
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func sortedKeys(m map[int]*State) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	return keys
}
