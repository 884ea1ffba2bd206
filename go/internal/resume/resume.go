// Package resume is the resume state of a client: which items of which epochs are done, as a
// compact State that a new client can start from, and the Tracker that keeps it while samples are
// delivered.
package resume

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"sync"

	"github.com/datago-dev/datago/internal/confread"
)

// Version is the version of the resume state format; VersionPlanned that of a planned state
// (equal_steps: one share's progress, valid across topologies).
const (
	Version        = 1
	VersionPlanned = 2
)

// State is what a client has done, enough to resume so that the samples delivered before and
// after together are exactly each epoch's samples. Items are numbered per epoch in listing order
// (seq); an item is done once it was delivered, or skipped as bad (it would be skipped again).
// Items in flight when the state was taken (queued, in a partial batch) are not done: the resumed
// client makes them again.
//
// A planned state (VersionPlanned) numbers the slots of one share's sequence instead (package plan):
// it names the plan it belongs to, the topology (World shares, this is Share), and Prior, what the
// generations before this topology did in the epochs still under way. Parts is a set of such states,
// one per share (datago.torch gathers them); a client picks or merges the ones it needs (Resolve).
type State struct {
	Version int          `json:"version"`
	Epoch   int          `json:"epoch"` // every epoch before it is complete
	Done    []EpochState `json:"done"`  // epochs >= Epoch with something done, ascending
	// Seed is the shuffle seed the state was taken with (random_sampling / shuffle), so that a
	// config without a seed resumes in the same order; nil when the source does not shuffle.
	Seed *int64 `json:"seed,omitempty"`

	Plan  *Plan        `json:"plan,omitempty"`
	World int          `json:"world,omitempty"`
	Share int          `json:"share,omitempty"`
	Prior []PriorEpoch `json:"prior,omitempty"`
	Check string       `json:"check,omitempty"` // a digest of the rest: an edited state is refused
	Parts []State      `json:"parts,omitempty"`
}

// Plan is what a planned state must agree on with the configuration that resumes it.
type Plan struct {
	Items      int    `json:"items"`  // catalog size
	Digest     string `json:"digest"` // of the catalog's keys (plan.Digest)
	Seed       int64  `json:"seed"`
	Shuffle    bool   `json:"shuffle"`
	EqualSteps string `json:"equal_steps"`
	BatchSize  int    `json:"batch_size"`
	// With batch_size: the batch layout, and a digest of every item's bucket (image_config, the files).
	BucketPerStep bool   `json:"bucket_per_step,omitempty"`
	DropLast      bool   `json:"drop_last,omitempty"`
	Buckets       string `json:"buckets,omitempty"`
}

// PriorEpoch is what earlier generations did in one epoch.
type PriorEpoch struct {
	Epoch int        `json:"epoch"`
	Gens  []PriorGen `json:"gens"`
}

// PriorGen is one earlier generation: its world size and what each of its shares did.
type PriorGen struct {
	World int         `json:"world"`
	Done  []ShareDone `json:"done"`
}

// ShareDone is one share's done slots in a generation: all of them (Full), or a prefix and extras.
type ShareDone struct {
	Share int     `json:"share"`
	Full  bool    `json:"full,omitempty"`
	Below int64   `json:"below,omitempty"`
	Extra []int64 `json:"extra,omitempty"`
}

// EpochState says that items 0..Below-1 are done, and so are the items of Extra (all >= Below).
type EpochState struct {
	Epoch int     `json:"epoch"`
	Below int64   `json:"below"`
	Extra []int64 `json:"extra,omitempty"`
}

// Parse reads resume_state (decoded JSON); a mistake names its key.
func Parse(m map[string]any) (*State, *confread.Error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, &confread.Error{Key: "resume_state", Msg: err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var st State
	if err := dec.Decode(&st); err != nil {
		return nil, &confread.Error{Key: "resume_state", Msg: "not a datago state: " + err.Error()}
	}
	if st.Version == VersionPlanned {
		if err := checkPlanned(&st); err != nil {
			return nil, err
		}
		return &st, nil
	}
	if st.Version != Version {
		return nil, &confread.Error{Key: "resume_state.version", Msg: fmt.Sprintf("must be %d or %d, got %d", Version, VersionPlanned, st.Version)}
	}
	if st.Plan != nil || st.World != 0 || st.Parts != nil || st.Prior != nil {
		return nil, &confread.Error{Key: "resume_state.version", Msg: fmt.Sprintf("a state with plan, world, parts or prior has version %d", VersionPlanned)}
	}
	return &st, checkDone(&st, "resume_state")
}

// checkDone checks the epochs and done lists of st, whose keys start with key.
func checkDone(st *State, key string) *confread.Error {
	if st.Epoch < 0 {
		return &confread.Error{Key: key + ".epoch", Msg: fmt.Sprintf("must be >= 0, got %d", st.Epoch)}
	}
	for i, e := range st.Done {
		if e.Epoch < st.Epoch || e.Below < 0 || (i > 0 && e.Epoch <= st.Done[i-1].Epoch) {
			return &confread.Error{Key: fmt.Sprintf("%s.done[%d]", key, i), Msg: "inconsistent with the other entries"}
		}
		for _, x := range e.Extra {
			if x < e.Below {
				return &confread.Error{Key: fmt.Sprintf("%s.done[%d].extra", key, i), Msg: fmt.Sprintf("%d is below %d", x, e.Below)}
			}
		}
	}
	return nil
}

// epochProgress is the done set of one epoch: a prefix and the items done beyond it.
type epochProgress struct {
	below int64
	extra map[int64]bool
	total int64 // items listed in the epoch, -1 until its listing ended
}

func (e *epochProgress) done(seq int64) bool { return seq < e.below || e.extra[seq] }

func (e *epochProgress) mark(seq int64) {
	if e.done(seq) {
		return
	}
	if seq != e.below {
		e.extra[seq] = true
		return
	}
	e.below++
	for e.extra[e.below] {
		delete(e.extra, e.below)
		e.below++
	}
}

// Tracker tracks the done items of the epochs under way. The memory it holds is bounded by the
// items in flight (done out of order), plus the whole of a resumed epoch's Extra list. It is safe
// for concurrent use.
type Tracker struct {
	mu     sync.Mutex
	first  int // epochs before it are complete
	epochs map[int]*epochProgress

	planned *State // the plan, topology and prior of a planned state (nil: unplanned)
}

// Planned makes the tracker's states planned ones: of plan, for share of world, after prior.
func (p *Tracker) Planned(plan Plan, world, share int, prior []PriorEpoch) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.planned = &State{Plan: &plan, World: world, Share: share, Prior: prior}
}

// Prior is what earlier generations did in epoch (nil: nothing, the epoch starts afresh).
func (p *Tracker) Prior(epoch int) []PriorGen {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.planned == nil {
		return nil
	}
	for _, pe := range p.planned.Prior {
		if pe.Epoch == epoch {
			return pe.Gens
		}
	}
	return nil
}

// NewTracker starts from resume (nil: nothing done).
func NewTracker(resume *State) *Tracker {
	p := &Tracker{epochs: map[int]*epochProgress{}}
	if resume != nil {
		p.first = resume.Epoch
		for _, e := range resume.Done {
			ep := p.epoch(e.Epoch)
			ep.below = e.Below
			for _, x := range e.Extra {
				ep.extra[x] = true
			}
		}
	}
	return p
}

func (p *Tracker) epoch(e int) *epochProgress {
	ep := p.epochs[e]
	if ep == nil {
		ep = &epochProgress{extra: map[int64]bool{}, total: -1}
		p.epochs[e] = ep
	}
	return ep
}

// IsDone reports whether a resumed client has already done the item.
func (p *Tracker) IsDone(epoch int, seq int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch < p.first {
		return true
	}
	ep := p.epochs[epoch]
	return ep != nil && ep.done(seq)
}

// Mark records that the item is done (delivered, or skipped as bad).
func (p *Tracker) Mark(epoch int, seq int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch < p.first {
		return
	}
	p.epoch(epoch).mark(seq)
	p.advance()
}

// Listed records that epoch's listing ended with total items.
func (p *Tracker) Listed(epoch int, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch < p.first {
		return
	}
	p.epoch(epoch).total = total
	p.advance()
}

// advance drops the complete epochs at the front.
func (p *Tracker) advance() {
	for {
		ep := p.epochs[p.first]
		if ep == nil || ep.total < 0 || ep.below < ep.total {
			return
		}
		delete(p.epochs, p.first)
		p.first++
	}
}

// State is what is done now.
func (p *Tracker) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := State{Version: Version, Epoch: p.first, Done: []EpochState{}}
	keys := make([]int, 0, len(p.epochs))
	for e := range p.epochs {
		keys = append(keys, e)
	}
	sort.Ints(keys)
	for _, e := range keys {
		ep := p.epochs[e]
		if ep.below == 0 && len(ep.extra) == 0 {
			continue
		}
		es := EpochState{Epoch: e, Below: ep.below}
		for x := range ep.extra {
			es.Extra = append(es.Extra, x)
		}
		sort.Slice(es.Extra, func(i, j int) bool { return es.Extra[i] < es.Extra[j] })
		st.Done = append(st.Done, es)
	}
	if pl := p.planned; pl != nil {
		st.Version, st.Plan, st.World, st.Share = VersionPlanned, pl.Plan, pl.World, pl.Share
		for _, pe := range pl.Prior {
			if pe.Epoch >= st.Epoch {
				st.Prior = append(st.Prior, pe)
			}
		}
		st.Check = checksum(st)
	}
	return st
}
