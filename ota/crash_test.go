package ota

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/testenv"
)

// TestCrashInjection kills the gateway process (SIGKILL, at the exact
// step, through the crashPoint hook) at every point an update passes:
// before and after each write, fsync and rename of the staged files, the
// state file and the pointers, during probation and during rollback. The
// points are enumerated by a clean run of a good bundle and of a bad one
// (a wrong broker password, rolled back). After each kill the gateway
// restarts and must run one whole generation (its files match the
// manifest, its configuration validates), the one the state machine
// names, and serve with it; at the end every message acknowledged to a
// device has reached the broker (edge mode, SQLite store).
func TestCrashInjection(t *testing.T) {
	b := startBroker(t)
	cons := newConsumer(t, b.addr)
	k := newKeyring(t, "ota")
	port := testenv.FreePort(t)
	tmp := t.TempDir()
	good := writeBundleFile(t, tmp, "good.otb", 1, genConfig(port, b.addr, "new", brokerPass, "json"), k.skeys[0])
	bad := writeBundleFile(t, tmp, "bad.otb", 1, genConfig(port, b.addr, "bad", "wrong-password", "json"), k.skeys[0])
	env := childEnv{db: filepath.Join(tmp, "queue.db"), broker: b.addr, trust: k.vkeys[0], port: port,
		window: 400 * time.Millisecond, grace: 300 * time.Millisecond}
	devs := newDevices()
	stopDevs := make(chan struct{})
	devsDone := make(chan struct{})
	go func() {
		defer close(devsDone)
		devs.run(fmt.Sprintf("127.0.0.1:%d", port), 2*time.Millisecond, stopDevs)
	}()
	defer func() {
		select {
		case <-stopDevs:
		default:
			close(stopDevs)
		}
		<-devsDone
	}()

	fresh := 0
	newDir := func() string {
		fresh++
		d := filepath.Join(tmp, "state-"+strconv.Itoa(fresh))
		return d
	}
	// Enumerate the points of a clean update with each bundle.
	enumerate := func(bundle, wantState string) []string {
		env.dir = newDir()
		pf := filepath.Join(tmp, fmt.Sprintf("points-%d", fresh))
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
	goodPts := enumerate(good, "Committed")
	badPts := enumerate(bad, "RolledBack")
	type run struct {
		bundle, point string
		good          bool
	}
	var runs []run
	distinct := map[string]bool{}
	for _, p := range goodPts {
		runs = append(runs, run{good, p, true})
		distinct[p] = true
	}
	for _, p := range badPts {
		if !distinct[p] { // the rollback path's own points
			runs = append(runs, run{bad, p, false})
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
	for _, r := range runs {
		env.dir = newDir()
		c := env.start(t, r.bundle, r.point, "")
		if !c.exitedByKill() {
			t.Fatalf("%s: the child was not killed at the point", r.point)
		}
		// Restart: recover, resume, serve.
		c = env.start(t, "", "", "")
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
		tag := "base"
		if cur == `"gen-1"` {
			tag = "new"
		}
		waitFor(t, func() bool { return cons.lastOf(tag).After(doneAt) })
		t.Logf("%-40s restart: %-40s -> %s", r.point, strings.TrimPrefix(running, "RUNNING "), strings.TrimPrefix(done, "DONE "))
		c.stop()
	}
	// Every acknowledged message reaches the broker.
	close(stopDevs)
	<-devsDone
	env.dir = newDir()
	c := env.start(t, "", "", "")
	defer c.stop()
	acked := devs.ackedSet()
	deadline := time.Now().Add(30 * time.Second)
	for len(cons.missing(acked)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if m := cons.missing(acked); len(m) > 0 {
		t.Fatalf("%d of %d acknowledged messages lost, e.g. %v", len(m), len(acked), m[:min(5, len(m))])
	}
	t.Logf("%d acknowledged messages, all delivered across %d kills", len(acked), len(runs))
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
