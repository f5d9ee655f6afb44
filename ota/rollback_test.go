package ota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/testenv"
	"github.com/iotgw/gateway/resume"
)

// TestRollbackSpeed applies bundles that break the upstream (a wrong
// broker password) or make decode errors jump to an edge-mode gateway
// with the default probation settings, and measures the time from the
// bad generation running (its probation starting: the degradation can be
// visible no earlier) to the old generation serving again (its first
// message at the broker), and the acknowledged messages lost. By default
// 2 runs per case; OTA_ROLLBACK_RUNS=20 for the figures in BENCHMARKS.md.
func TestRollbackSpeed(t *testing.T) {
	runs := 2
	if v, err := strconv.Atoi(os.Getenv("OTA_ROLLBACK_RUNS")); err == nil && v > 0 {
		runs = v
	}
	b := startBroker(t)
	cons := newConsumer(t, b.addr)
	k := newKeyring(t, "ota")
	port := testenv.FreePort(t)
	tmp := t.TempDir()
	st, err := resume.OpenSQLiteStore(resume.SQLiteConfig{Path: filepath.Join(tmp, "queue.db"), Logger: slog.New(slog.DiscardHandler), MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	base, err := gateway.ParseConfig([]byte(genConfig(port, b.addr, "base", brokerPass, "json")), "base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.WithLogger(slog.New(slog.DiscardHandler)), gateway.WithRegistry(testRegistry(t)), gateway.WithConfig(base),
		gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st), gateway.WithQoS(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(2)
	go func() { defer wg.Done(); _ = g.Run(ctx) }()
	counters := NewCounters(g)
	go func() { defer wg.Done(); counters.Watch(ctx, 250*time.Millisecond) }()

	var mu sync.Mutex
	var probationAt time.Time
	u, err := New(filepath.Join(tmp, "ota"), k.trust(1), &GatewayApplier{Gateway: g, Base: base},
		WithHealth(counters), WithHooks(&ReplayDeadLetters{Gateway: g}), WithReport(func(s Status) {
			if s.State == Probation {
				mu.Lock()
				probationAt = time.Now()
				mu.Unlock()
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	devs := newDevices()
	stopDevs := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); devs.run(fmt.Sprintf("127.0.0.1:%d", port), 2*time.Millisecond, stopDevs) }()
	stopped := false
	defer func() {
		if !stopped {
			close(stopDevs)
		}
	}()
	waitFor(t, func() bool { return !cons.lastOf(tagOf("base", port)).IsZero() })

	cases := []struct{ name, cfg string }{
		{"wrong broker password", genConfig(port, b.addr, "bad", "wrong-password", "json")},
		{"decode errors jump", genConfig(port, b.addr, "bad", brokerPass, "broken")},
	}
	for _, c := range cases {
		if f := os.Getenv("OTA_ROLLBACK_CASE"); f != "" && f != c.name {
			continue
		}
		bundlePath := writeBundleFile(t, tmp, "bad.otb", 1, c.cfg, k.skeys[0])
		var took []time.Duration
		for i := 0; i < runs; i++ {
			f, err := os.Open(bundlePath)
			if err != nil {
				t.Fatal(err)
			}
			err = u.Update(ctx, f)
			f.Close()
			var rb *RollbackError
			if !errors.As(err, &rb) {
				st := g.Stats()
				t.Fatalf("%s run %d: %v (frames %d, decode errors %d, dead letters %d, dl errors %d)", c.name, i, err, st.FramesIn, st.DecodeErrors, st.DeadLetters, st.DeadLetterErrors)
			}
			mu.Lock()
			from := probationAt
			mu.Unlock()
			rolledBack := time.Now()
			waitFor(t, func() bool { return cons.lastOf(tagOf("base", port)).After(rolledBack) })
			// The first message of the old generation after the rollback.
			took = append(took, cons.firstOf(tagOf("base", port), rolledBack).Sub(from))
			if i == 0 {
				t.Logf("%s: rolled back because: %s", c.name, rb.Reason)
			}
		}
		slices.Sort(took)
		p50, max := took[len(took)/2], took[len(took)-1]
		t.Logf("%s: %d runs, degradation to old generation serving p50 %s max %s", c.name, runs, p50.Round(time.Millisecond), max.Round(time.Millisecond))
		if max > 10*time.Second {
			t.Errorf("%s: a rollback took %s, over the 10 s target", c.name, max)
		}
	}
	// The connector's configuration never changed: its device session
	// survived every update and rollback.
	if n := devs.sessions.Load(); n != 1 {
		t.Errorf("devices connected %d times, want one session throughout", n)
	}
	close(stopDevs)
	stopped = true
	acked := devs.ackedSet()
	deadline := time.Now().Add(30 * time.Second)
	for len(cons.missing(acked)) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	lost := cons.missing(acked)
	t.Logf("messages: %d acknowledged, %d lost", len(acked), len(lost))
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged messages lost, e.g. %v", len(lost), lost[:min(5, len(lost))])
	}
}
