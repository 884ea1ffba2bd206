package datago

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
)

// StateVersion is the version of the resume state format.
const StateVersion = 1

// State is what a client has done, enough to resume so that the samples delivered before and
// after together are exactly each epoch's samples. Items are numbered per epoch in listing order
// (seq); an item is done once it was delivered, or skipped as bad (it would be skipped again).
// Items in flight when the state was taken (queued, in a partial batch) are not done: the resumed
// client makes them again.
type State struct {
	Version int          `json:"version"`
	Epoch   int          `json:"epoch"` // every epoch before it is complete
	Done    []EpochState `json:"done"`  // epochs >= Epoch with something done, ascending
}

// EpochState: items 0..Below-1 are done, and so are the items of Extra (all >= Below).
type EpochState struct {
	Epoch int     `json:"epoch"`
	Below int64   `json:"below"`
	Extra []int64 `json:"extra,omitempty"`
}

func parseState(m map[string]any) (*State, *ConfigError) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, &ConfigError{Key: "resume_state", Msg: err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var st State
	if err := dec.Decode(&st); err != nil {
		return nil, &ConfigError{Key: "resume_state", Msg: "not a datago state: " + err.Error()}
	}
	if st.Version != StateVersion {
		return nil, &ConfigError{Key: "resume_state.version", Msg: fmt.Sprintf("must be %d, got %d", StateVersion, st.Version)}
	}
	if st.Epoch < 0 {
		return nil, &ConfigError{Key: "resume_state.epoch", Msg: fmt.Sprintf("must be >= 0, got %d", st.Epoch)}
	}
	for i, e := range st.Done {
		if e.Epoch < st.Epoch || e.Below < 0 || (i > 0 && e.Epoch <= st.Done[i-1].Epoch) {
			return nil, &ConfigError{Key: fmt.Sprintf("resume_state.done[%d]", i), Msg: "inconsistent with the other entries"}
		}
		for _, x := range e.Extra {
			if x < e.Below {
				return nil, &ConfigError{Key: fmt.Sprintf("resume_state.done[%d].extra", i), Msg: fmt.Sprintf("%d is below %d", x, e.Below)}
			}
		}
	}
	return &st, nil
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

// progress tracks the done items of the epochs under way. The memory it holds is bounded by the
// items in flight (done out of order), plus the whole of a resumed epoch's Extra list.
type progress struct {
	mu     sync.Mutex
	first  int // epochs before it are complete
	epochs map[int]*epochProgress
}

func newProgress(resume *State) *progress {
	p := &progress{epochs: map[int]*epochProgress{}}
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

func (p *progress) epoch(e int) *epochProgress {
	ep := p.epochs[e]
	if ep == nil {
		ep = &epochProgress{extra: map[int64]bool{}, total: -1}
		p.epochs[e] = ep
	}
	return ep
}

// isDone reports whether a resumed client has already done the item.
func (p *progress) isDone(epoch int, seq int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch < p.first {
		return true
	}
	ep := p.epochs[epoch]
	return ep != nil && ep.done(seq)
}

func (p *progress) mark(epoch int, seq int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch < p.first {
		return
	}
	p.epoch(epoch).mark(seq)
	p.advance()
}

// listed records that epoch's listing ended with total items.
func (p *progress) listed(epoch int, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch < p.first {
		return
	}
	p.epoch(epoch).total = total
	p.advance()
}

// advance drops the complete epochs at the front.
func (p *progress) advance() {
	for {
		ep := p.epochs[p.first]
		if ep == nil || ep.total < 0 || ep.below < ep.total {
			return
		}
		delete(p.epochs, p.first)
		p.first++
	}
}

func (p *progress) state() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := State{Version: StateVersion, Epoch: p.first, Done: []EpochState{}}
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
	return st
}
