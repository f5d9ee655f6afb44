package resume

import (
	"testing"
)

func TestMachineEveryStateEventPair(t *testing.T) {
	// want[state][event] with a backlog; wantEmpty overrides the guarded
	// pair when the store is empty.
	want := map[State]map[Event]State{
		Online:     {LinkUp: Online, LinkPartial: Degraded, LinkDown: Offline, PublishOK: Online, PublishFailed: Degraded, BacklogEmpty: Online},
		Degraded:   {LinkUp: Online, LinkPartial: Degraded, LinkDown: Offline, PublishOK: Degraded, PublishFailed: Offline, BacklogEmpty: Degraded},
		Offline:    {LinkUp: Recovering, LinkPartial: Recovering, LinkDown: Offline, PublishOK: Recovering, PublishFailed: Offline, BacklogEmpty: Offline},
		Recovering: {LinkUp: Recovering, LinkPartial: Recovering, LinkDown: Offline, PublishOK: Draining, PublishFailed: Offline, BacklogEmpty: Recovering},
		Draining:   {LinkUp: Draining, LinkPartial: Draining, LinkDown: Offline, PublishOK: Draining, PublishFailed: Offline, BacklogEmpty: Online},
	}
	for _, backlog := range []bool{true, false} {
		for s := State(0); s < numStates; s++ {
			for ev := Event(0); ev < numEvents; ev++ {
				exp, ok := want[s][ev]
				if !ok {
					t.Fatalf("table test misses (%s, %s)", s, ev)
				}
				if !backlog && s == Recovering && ev == PublishOK {
					exp = Online
				}
				var entered, exited []State
				m := NewMachine(MachineConfig{Initial: s, Backlog: func() bool { return backlog }, Logger: quietLogger()})
				for st := State(0); st < numStates; st++ {
					m.OnEnter(st, func(from, to State, _ Event) { entered = append(entered, to) })
					m.OnExit(st, func(from, to State, _ Event) { exited = append(exited, from) })
				}
				got, changed := m.Fire(ev)
				if got != exp {
					t.Errorf("backlog=%v (%s, %s) -> %s, want %s", backlog, s, ev, got, exp)
				}
				if changed != (exp != s) {
					t.Errorf("(%s, %s): changed=%v", s, ev, changed)
				}
				if changed {
					if len(entered) != 1 || entered[0] != exp || len(exited) != 1 || exited[0] != s {
						t.Errorf("(%s, %s): entry %v exit %v actions", s, ev, entered, exited)
					}
					if n := m.Transitions()[s.String()+"->"+exp.String()]; n != 1 {
						t.Errorf("(%s, %s): transition counted %d times", s, ev, n)
					}
				} else if len(entered)+len(exited) != 0 || len(m.Transitions()) != 0 {
					t.Errorf("(%s, %s): actions ran or counted without a transition", s, ev)
				}
			}
		}
	}
}

func TestMachineRecoveryWalk(t *testing.T) {
	m := NewMachine(MachineConfig{Logger: quietLogger()})
	ch := make(chan State, 16)
	m.Watch(ch)
	for _, ev := range []Event{LinkDown, LinkDown, LinkUp, PublishOK, PublishOK, BacklogEmpty} {
		m.Fire(ev)
	}
	close(ch)
	var walk []State
	for s := range ch {
		walk = append(walk, s)
	}
	exp := []State{Offline, Recovering, Draining, Online}
	if len(walk) != len(exp) {
		t.Fatalf("walk %v, want %v", walk, exp)
	}
	for i := range exp {
		if walk[i] != exp[i] {
			t.Fatalf("walk %v, want %v", walk, exp)
		}
	}
	if got, _ := m.Fire(Event(200)); got != Online {
		t.Fatalf("unknown event changed state to %s", got)
	}
}
