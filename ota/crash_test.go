package ota

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/testenv"
)

// crashLane is one gateway of the crash test: its device port (and so
// its bundles and topics), its SQLite file and its devices.
type crashLane struct {
	env       childEnv
	good, bad string
	devs      *devices
	stop      chan struct{}
	done      chan struct{}
}

// TestCrashInjection kills the gateway process (SIGKILL, at the exact
// step, through the crashPoint hook) at every point an update passes:
// before and after each write, fsync and rename of the staged files, the
// state file and the pointers, during probation and during rollback. The
// points are enumerated by a clean run of a good bundle and of a bad one
// (a wrong broker password, rolled back). After each kill the gateway
// restarts and must run one whole generation (its files match the
// manifest, its configuration validates), the one the state machine
// names, and serve with it; at the end every message acknowledged to a
// device has reached the broker (edge mode, SQLite store). The points run
// in three lanes (three gateways) in parallel to keep the test short.
func TestCrashInjection(t *testing.T) {
	b := startBroker(t)
	cons := newConsumer(t, b.addr)
	k := newKeyring(t, "ota")
	tmp := t.TempDir()
	var dirs atomic.Int64
	newDir := func() string { return filepath.Join(tmp, "state-"+strconv.FormatInt(dirs.Add(1), 10)) }
	lanes := make([]*crashLane, 3)
	for i := range lanes {
		port := testenv.FreePort(t)
		l := &crashLane{
			env: childEnv{db: filepath.Join(tmp, fmt.Sprintf("queue-%d.db", i)), broker: b.addr, trust: k.vkeys[0], port: port,
				window: 400 * time.Millisecond, grace: 300 * time.Millisecond},
			good: writeBundleFile(t, tmp, fmt.Sprintf("good-%d.otb", i), 1, genConfig(port, b.addr, "new", brokerPass, "json"), k.skeys[0]),
			bad:  writeBundleFile(t, tmp, fmt.Sprintf("bad-%d.otb", i), 1, genConfig(port, b.addr, "bad", "wrong-password", "json"), k.skeys[0]),
			devs: newDevices(), stop: make(chan struct{}), done: make(chan struct{}),
		}
		l.devs.next.Store(uint64(i) << 40) // disjoint message numbers
		go func() {
			defer close(l.done)
			l.devs.run(fmt.Sprintf("127.0.0.1:%d", port), 2*time.Millisecond, l.stop)
		}()
		lanes[i] = l
	}
	stopDevices := func() {
		for _, l := range lanes {
			select {
			case <-l.stop:
			default:
				close(l.stop)
			}
			<-l.done
		}
	}
	defer stopDevices()

	// Enumerate the points of a clean update with each bundle.
	enumerate := func(l *crashLane, bundle, wantState string) []string {
		env := l.env
		env.dir = newDir()
		pf := env.dir + ".points"
		c := env.start(t, bundle, "", pf)
		defer c.stop()
		expectLine(t, c, "RUNNING")
		expectLine(t, c, "UPDATING")
		done := expectLine(t, c, "DONE")
		if !strings.HasPrefix(done, "DONE "+wantState+" ") {
			t.Fatalf("clean run of %s: %s", filepath.Base(bundle), done)
		}
		data, err := os.ReadFile(pf)
		if err != nil {
			t.Fatal(err)
		}
		var pts []string
		seen := map[string]bool{}
		for _, p := range strings.Fields(string(data)) {
			if !seen[p] {
				seen[p] = true
				pts = append(pts, p)
			}
		}
		return pts
	}
	goodPts := enumerate(lanes[0], lanes[0].good, "Committed")
	badPts := enumerate(lanes[0], lanes[0].bad, "RolledBack")
	type run struct {
		point string
		good  bool
	}
	var runs []run
	distinct := map[string]bool{}
	for _, p := range goodPts {
		runs = append(runs, run{p, true})
		distinct[p] = true
	}
	for _, p := range badPts {
		if !distinct[p] { // the rollback path's own points
			runs = append(runs, run{p, false})
			distinct[p] = true
		}
	}
	if len(distinct) < 30 {
		t.Fatalf("only %d distinct crash points: %v", len(distinct), goodPts)
	}
	t.Logf("%d distinct crash points (%d in the good update, %d in the rolled-back one)", len(distinct), len(goodPts), len(badPts))
	if testing.Short() && !testenv.InCI() {
		var some []run
		for i, r := range runs {
			if i%4 == 0 {
				some = append(some, r)
			}
		}
		runs = some
	}

	kill := func(t *testing.T, l *crashLane, r run) {
		env := l.env
		env.dir = newDir()
		bundle := l.bad
		if r.good {
			bundle = l.good
		}
		c := env.start(t, bundle, r.point, "")
		if !c.exitedByKill() {
			t.Fatalf("%s: the child was not killed at the point", r.point)
		}
		// Restart: recover, resume, serve.
		c = env.start(t, "", "", "")
		defer c.stop()
		running := expectLine(t, c, "RUNNING")
		done := expectLine(t, c, "DONE")
		doneAt := time.Now()
		f := strings.Fields(done) // DONE state "current" version err
		state, cur := f[1], f[2]
		switch {
		case cur == `"gen-1"` && r.good:
			if state != "Committed" {
				t.Errorf("%s: runs the new generation in state %s", r.point, state)
			}
		case cur == `""`:
			if state != "Idle" && state != "RolledBack" && state != "Committed" {
				t.Errorf("%s: runs the base configuration in state %s", r.point, state)
			}
		default:
			t.Errorf("%s: runs %s (%s) after the restart (%s)", r.point, cur, state, running)
		}
		tag := tagOf("base", env.port)
		if cur == `"gen-1"` {
			tag = tagOf("new", env.port)
		}
		waitFor(t, func() bool { return cons.lastOf(tag).After(doneAt) })
		t.Logf("%-40s restart: %-28s -> %s", r.point, strings.TrimPrefix(running, "RUNNING "), strings.TrimPrefix(done, "DONE "))
	}
	t.Run("kills", func(t *testing.T) {
		for i, l := range lanes {
			t.Run(fmt.Sprintf("lane-%d", i), func(t *testing.T) {
				t.Parallel()
				for j := i; j < len(runs); j += len(lanes) {
					kill(t, l, runs[j])
				}
			})
		}
	})
	if t.Failed() {
		return
	}
	// Every acknowledged message reaches the broker: each lane's gateway
	// starts once more and drains what its last run left in the store.
	stopDevices()
	total := 0
	for _, l := range lanes {
		env := l.env
		env.dir = newDir()
		c := env.start(t, "", "", "")
		acked := l.devs.ackedSet()
		total += len(acked)
		deadline := time.Now().Add(30 * time.Second)
		for len(cons.missing(acked)) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		c.stop()
		if m := cons.missing(acked); len(m) > 0 {
			t.Fatalf("%d of %d acknowledged messages lost, e.g. %v", len(m), len(acked), m[:min(5, len(m))])
		}
	}
	t.Logf("%d acknowledged messages, all delivered across %d kills", total, len(runs))
}

// expectLine reads the child's next status line and checks its prefix.
func expectLine(t testing.TB, c *child, prefix string) string {
	t.Helper()
	l := c.next(t, 30*time.Second)
	if !strings.HasPrefix(l, prefix) {
		t.Fatalf("child said %q, want %s", l, prefix)
	}
	return l
}
