package ota

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTransitions covers every (state, event) pair: each row is a state,
// each column an event in Event order, "-" where the event is refused.
func TestTransitions(t *testing.T) {
	//              Offer        Downloaded Verified Reject  Apply     Applied    ApplyFailed  Healthy    Degraded     RolledBack  RollbackFailed Restart
	table := map[State][numEvents]string{
		Idle:        {"Downloading", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "Idle"},
		Downloading: {"-", "Verifying", "-", "Failed", "-", "-", "-", "-", "-", "-", "-", "Idle"},
		Verifying:   {"-", "-", "Staged", "Failed", "-", "-", "-", "-", "-", "-", "-", "Idle"},
		Staged:      {"-", "-", "-", "-", "Applying", "-", "-", "-", "-", "-", "-", "Staged"},
		Applying:    {"-", "-", "-", "-", "-", "Probation", "RollingBack", "-", "-", "-", "-", "Probation"},
		Probation:   {"-", "-", "-", "-", "-", "-", "-", "Committed", "RollingBack", "-", "-", "RollingBack"},
		Committed:   {"Downloading", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "Committed"},
		RollingBack: {"-", "-", "-", "-", "-", "-", "-", "-", "-", "RolledBack", "Failed", "RollingBack"},
		RolledBack:  {"Downloading", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "RolledBack"},
		Failed:      {"Downloading", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "Failed"},
	}
	if len(table) != int(numStates) {
		t.Fatalf("table has %d states, want %d", len(table), numStates)
	}
	for s := State(0); s < numStates; s++ {
		row, ok := table[s]
		if !ok {
			t.Fatalf("no row for %s", s)
		}
		for e := Event(0); e < numEvents; e++ {
			got, err := Next(s, e)
			want := row[e]
			if want == "-" {
				if !errors.Is(err, ErrBadTransition) || got != s {
					t.Errorf("%s on %s: got %s, %v; want refused", s, e, got, err)
				}
				continue
			}
			if err != nil || got.String() != want {
				t.Errorf("%s on %s: got %s, %v; want %s", s, e, got, err, want)
			}
		}
	}
	if _, err := Next(State(99), EvRestart); err == nil {
		t.Error("unknown state accepted")
	}
	for s := State(0); s < numStates; s++ {
		var back State
		if b, _ := s.MarshalText(); back.UnmarshalText(b) != nil || back != s {
			t.Errorf("%s does not round-trip", s)
		}
	}
}

func TestUpdateCommitsAndRollsBack(t *testing.T) {
	k := newKeyring(t, "alice")
	dir := t.TempDir()
	a := &fakeApplier{}
	var healthy = true
	var reports []State
	u := newTestUpdater(t, dir, k.trust(1), a, WithHealth(healthFunc(func() error {
		if !healthy {
			return errors.New("decode errors jumped")
		}
		return nil
	})), WithReport(func(s Status) { reports = append(reports, s.State) }))
	v1 := map[string]string{ConfigFile: "connectors: [] # v1\n"}
	if err := u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(1, v1), v1, k.skeys...))); err != nil {
		t.Fatal(err)
	}
	st := u.Status()
	if st.State != Committed || st.Current != "gen-1" || st.Good != "gen-1" || a.last() != "gen-1" {
		t.Fatalf("after v1: %+v %v", st, a.applied)
	}
	want := "Downloading Verifying Staged Applying Probation Committed"
	if got := stateList(reports); got != want {
		t.Fatalf("reports %s, want %s", got, want)
	}
	healthy = false
	reports = nil
	v2 := map[string]string{ConfigFile: "connectors: [] # v2\n"}
	err := u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(2, v2), v2, k.skeys...)))
	var rb *RollbackError
	if !errors.As(err, &rb) || !strings.Contains(rb.Reason, "decode errors jumped") {
		t.Fatalf("got %v", err)
	}
	st = u.Status()
	if st.State != RolledBack || st.Current != "gen-1" || st.Version != 1 || a.last() != "gen-1" {
		t.Fatalf("after v2: %+v %v", st, a.applied)
	}
	if got, want := stateList(reports), "Downloading Verifying Staged Applying Probation RollingBack RolledBack"; got != want {
		t.Fatalf("reports %s, want %s", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "gen-2")); !os.IsNotExist(err) {
		t.Fatalf("rolled-back generation left on disk: %v", err)
	}
	if p, _ := os.ReadFile(filepath.Join(dir, "current")); string(p) != "gen-1\n" {
		t.Fatalf("current = %q", p)
	}
	// A degradation pushed from outside (an SLO alert) rolls back too.
	healthy = true
	u.window = 5e9
	done := make(chan error, 1)
	go func() {
		done <- u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(3, v2), v2, k.skeys...)))
	}()
	waitFor(t, func() bool { return u.Status().State == Probation })
	u.Degrade("slo: publish latency p99 above objective")
	if err := <-done; !errors.As(err, &rb) || !strings.Contains(rb.Reason, "slo") {
		t.Fatalf("got %v", err)
	}
	if s := u.Stats(); s.Committed != 1 || s.RolledBack != 2 || s.Applied != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestApplyFailureRollsBackToBase(t *testing.T) {
	k := newKeyring(t, "alice")
	a := &fakeApplier{failOn: "boom"}
	u := newTestUpdater(t, t.TempDir(), k.trust(1), a)
	files := map[string]string{ConfigFile: "connectors: [] # boom\n"}
	err := u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(1, files), files, k.skeys...)))
	var rb *RollbackError
	if !errors.As(err, &rb) {
		t.Fatalf("got %v", err)
	}
	if st := u.Status(); st.State != RolledBack || st.Current != "" || a.last() != "" {
		t.Fatalf("%+v %v", st, a.applied)
	}
}

func TestBusy(t *testing.T) {
	k := newKeyring(t, "alice")
	u := newTestUpdater(t, t.TempDir(), k.trust(1), &fakeApplier{}, WithProbation(5e9, 5e6))
	files := map[string]string{ConfigFile: goodCfg}
	done := make(chan error, 1)
	go func() {
		done <- u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(1, files), files, k.skeys...)))
	}()
	waitFor(t, func() bool { return u.Status().State == Probation })
	if err := u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(2, files), files, k.skeys...))); !errors.Is(err, ErrBusy) {
		t.Fatalf("got %v", err)
	}
	u.Degrade("stop")
	<-done
}

// TestRecover starts an Updater on state directories as a crash leaves
// them.
func TestRecover(t *testing.T) {
	k := newKeyring(t, "alice")
	files := map[string]string{ConfigFile: goodCfg}
	// A committed gen-1, then gen-2 staged: the base every case edits.
	setup := func(t *testing.T) (string, *Updater) {
		dir := t.TempDir()
		u := newTestUpdater(t, dir, k.trust(1), &fakeApplier{})
		if err := u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(1, files), files, k.skeys...))); err != nil {
			t.Fatal(err)
		}
		return dir, u
	}
	write := func(t *testing.T, dir string, s Status, current string) {
		if err := (disk{dir}).writeStatus(s); err != nil {
			t.Fatal(err)
		}
		if err := (disk{dir}).writePointer(currentFile, current, "t"); err != nil {
			t.Fatal(err)
		}
	}
	stage2 := func(t *testing.T, dir string) {
		u := newTestUpdater(t, dir, k.trust(1), &fakeApplier{})
		if _, err := u.stage(context.Background(), bytes.NewReader(bundle(t, manifest(2, files), files, k.skeys...))); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name      string
		prepare   func(t *testing.T, dir string)
		state     State
		current   string
		leftovers []string // must be gone
	}{
		{"half-written generation", func(t *testing.T, dir string) {
			os.MkdirAll(filepath.Join(dir, "gen-2.partial", "rules"), 0o755)
			os.WriteFile(filepath.Join(dir, ".state.tmp"), []byte("{"), 0o644)
		}, Committed, "gen-1", []string{"gen-2.partial", ".state.tmp"}},
		{"staged but state not yet written", func(t *testing.T, dir string) {
			os.Mkdir(filepath.Join(dir, "gen-2"), 0o755)
		}, Committed, "gen-1", []string{"gen-2"}},
		{"staged", func(t *testing.T, dir string) { stage2(t, dir) }, Staged, "gen-1", nil},
		{"applying, pointer not moved", func(t *testing.T, dir string) {
			stage2(t, dir)
			write(t, dir, Status{State: Applying, Current: "gen-1", Good: "gen-1", Target: "gen-2"}, "gen-1")
		}, Probation, "gen-2", nil},
		{"applying, pointer moved", func(t *testing.T, dir string) {
			stage2(t, dir)
			write(t, dir, Status{State: Applying, Current: "gen-1", Good: "gen-1", Target: "gen-2"}, "gen-2")
		}, Probation, "gen-2", nil},
		{"probation", func(t *testing.T, dir string) {
			stage2(t, dir)
			write(t, dir, Status{State: Probation, Current: "gen-2", Good: "gen-1", Target: "gen-2"}, "gen-2")
		}, RolledBack, "gen-1", []string{"gen-2"}},
		{"rolling back, pointer not moved", func(t *testing.T, dir string) {
			stage2(t, dir)
			write(t, dir, Status{State: RollingBack, Current: "gen-2", Good: "gen-1", Target: "gen-2"}, "gen-2")
		}, RolledBack, "gen-1", []string{"gen-2"}},
		{"staged generation missing", func(t *testing.T, dir string) {
			stage2(t, dir)
			os.RemoveAll(filepath.Join(dir, "gen-2"))
		}, Idle, "gen-1", nil},
		{"applying, generation missing", func(t *testing.T, dir string) {
			write(t, dir, Status{State: Applying, Current: "gen-1", Good: "gen-1", Target: "gen-2"}, "gen-1")
		}, RolledBack, "gen-1", nil},
		{"committed, good pointer not moved", func(t *testing.T, dir string) {
			stage2(t, dir)
			write(t, dir, Status{State: Committed, Current: "gen-2", Good: "gen-2"}, "gen-2")
		}, Committed, "gen-2", []string{"gen-1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := setup(t)
			c.prepare(t, dir)
			u := newTestUpdater(t, dir, k.trust(1), &fakeApplier{})
			st := u.Status()
			if st.State != c.state || st.Current != c.current {
				t.Fatalf("got %s on %q, want %s on %q", st.State, st.Current, c.state, c.current)
			}
			g, err := u.Current()
			if err != nil || g.name() != c.current {
				t.Fatalf("current %v %v", g, err)
			}
			for _, l := range c.leftovers {
				if _, err := os.Stat(filepath.Join(dir, l)); !os.IsNotExist(err) {
					t.Errorf("%s left: %v", l, err)
				}
			}
			if c.state == Committed {
				if p, _ := (disk{dir}).readPointer(goodFile); p != c.current {
					t.Errorf("good = %q", p)
				}
			}
			if err := u.Resume(context.Background()); err != nil {
				t.Fatal(err)
			}
			if st := u.Status(); !st.State.Resting() {
				t.Fatalf("after resume: %s", st.State)
			}
		})
	}
}

func stateList(ss []State) string {
	var b []string
	for _, s := range ss {
		b = append(b, s.String())
	}
	return strings.Join(b, " ")
}
