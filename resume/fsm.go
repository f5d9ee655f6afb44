package resume

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// State is where the uplink stands, as the resume state machine sees it.
type State uint8

const (
	// Online: the quorum of probes agrees the link is up and nothing is
	// waiting in the store. Live traffic goes straight upstream.
	Online State = iota
	// Degraded: the link is up by quorum but some probe fails or a publish
	// failed; traffic still flows, failures are spilled to the store. A
	// second publish failure in a row means the upstream is gone even if
	// the network answers probes: Offline.
	Degraded
	// Offline: the quorum says the link is down. Everything goes to the
	// store; no drain is attempted.
	Offline
	// Recovering: the quorum says the link is back; waiting for the
	// upstream itself (a broker publish) to confirm before draining.
	Recovering
	// Draining: the upstream takes messages again and the store has a
	// backlog; it is replayed alongside live traffic.
	Draining
	numStates
)

var stateNames = [...]string{"online", "degraded", "offline", "recovering", "draining"}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Event is an input of the state machine.
type Event uint8

const (
	// LinkUp: every probe succeeds.
	LinkUp Event = iota
	// LinkPartial: the quorum succeeds but at least one probe fails.
	LinkPartial
	// LinkDown: fewer probes than the quorum succeed.
	LinkDown
	// PublishOK: the upstream acknowledged a publish.
	PublishOK
	// PublishFailed: a publish upstream failed.
	PublishFailed
	// BacklogEmpty: the store has nothing left to replay.
	BacklogEmpty
	numEvents
)

var eventNames = [...]string{"link_up", "link_partial", "link_down", "publish_ok", "publish_failed", "backlog_empty"}

func (e Event) String() string {
	if e < numEvents {
		return eventNames[e]
	}
	return fmt.Sprintf("event(%d)", uint8(e))
}

// next is the transition table. Guards (has a backlog?) are applied in
// Fire on the entries marked guardBacklog.
type transition struct {
	to           State
	guardBacklog bool // go to Draining if the store has a backlog, else Online
}

var table = [numStates][numEvents]transition{
	Online: {
		LinkUp: {to: Online}, LinkPartial: {to: Degraded}, LinkDown: {to: Offline},
		PublishOK: {to: Online}, PublishFailed: {to: Degraded}, BacklogEmpty: {to: Online},
	},
	Degraded: {
		LinkUp: {to: Online}, LinkPartial: {to: Degraded}, LinkDown: {to: Offline},
		PublishOK: {to: Degraded}, PublishFailed: {to: Offline}, BacklogEmpty: {to: Degraded},
	},
	Offline: {
		LinkUp: {to: Recovering}, LinkPartial: {to: Recovering}, LinkDown: {to: Offline},
		PublishOK: {to: Recovering}, PublishFailed: {to: Offline}, BacklogEmpty: {to: Offline},
	},
	Recovering: {
		LinkUp: {to: Recovering}, LinkPartial: {to: Recovering}, LinkDown: {to: Offline},
		PublishOK: {guardBacklog: true}, PublishFailed: {to: Offline}, BacklogEmpty: {to: Recovering},
	},
	Draining: {
		LinkUp: {to: Draining}, LinkPartial: {to: Draining}, LinkDown: {to: Offline},
		PublishOK: {to: Draining}, PublishFailed: {to: Offline}, BacklogEmpty: {to: Online},
	},
}

// Action runs on entering or leaving a state.
type Action func(from, to State, ev Event)

// MachineConfig configures a Machine.
type MachineConfig struct {
	// Initial is the starting state. Default Online.
	Initial State
	// Backlog reports whether the store holds records to replay; it guards
	// Recovering -> Draining. Default: always true (drain, then let
	// BacklogEmpty end it).
	Backlog func() bool
	// Logger receives one line per transition. Default slog.Default().
	Logger *slog.Logger
}

// Machine is the resume state machine (R4.1): Online, Degraded, Offline,
// Recovering, Draining with guarded transitions and entry/exit actions.
// Every transition is logged and counted. Safe for concurrent use; actions
// run in the order of transitions, under the machine's lock, so they must
// not call Fire themselves (hand off to a goroutine that does).
type Machine struct {
	mu      sync.Mutex
	state   State
	since   time.Time
	backlog func() bool
	log     *slog.Logger
	enter   [numStates][]Action
	exit    [numStates][]Action
	counts  [numStates][numStates]uint64
	watch   []chan<- State
}

// NewMachine returns a machine in cfg.Initial.
func NewMachine(cfg MachineConfig) *Machine {
	if cfg.Backlog == nil {
		cfg.Backlog = func() bool { return true }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Machine{state: cfg.Initial, since: time.Now(), backlog: cfg.Backlog, log: cfg.Logger}
}

// OnEnter adds an action run each time the machine enters s.
func (m *Machine) OnEnter(s State, a Action) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.enter[s] = append(m.enter[s], a)
}

// OnExit adds an action run each time the machine leaves s.
func (m *Machine) OnExit(s State, a Action) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.exit[s] = append(m.exit[s], a)
}

// Watch sends every new state to ch without blocking (a full channel
// misses states; size it for the caller's pace).
func (m *Machine) Watch(ch chan<- State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.watch = append(m.watch, ch)
}

// State returns the current state and when it was entered.
func (m *Machine) State() (State, time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state, m.since
}

// Fire applies ev and returns the new state and whether it changed.
func (m *Machine) Fire(ev Event) (State, bool) {
	if ev >= numEvents {
		return m.current(), false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	from := m.state
	tr := table[from][ev]
	to := tr.to
	if tr.guardBacklog {
		to = Online
		if m.backlog() {
			to = Draining
		}
	}
	if to == from {
		return from, false
	}
	for _, a := range m.exit[from] {
		a(from, to, ev)
	}
	m.state, m.since = to, time.Now()
	m.counts[from][to]++
	m.log.Info("resume state", "from", from.String(), "to", to.String(), "event", ev.String())
	for _, a := range m.enter[to] {
		a(from, to, ev)
	}
	for _, ch := range m.watch {
		select {
		case ch <- to:
		default:
		}
	}
	return to, true
}

func (m *Machine) current() State {
	s, _ := m.State()
	return s
}

// Transitions returns how often the machine went from one state to
// another, keyed "from->to".
func (m *Machine) Transitions() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]uint64{}
	for f := State(0); f < numStates; f++ {
		for t := State(0); t < numStates; t++ {
			if n := m.counts[f][t]; n > 0 {
				out[f.String()+"->"+t.String()] = n
			}
		}
	}
	return out
}
