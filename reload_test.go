package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWatchedTruncationKeepsServing truncates the watched file to 0 bytes,
// as a copy or an editor does for a moment: the reload is rejected, the
// connector keeps running and frames still reach the sink.
func TestWatchedTruncationKeepsServing(t *testing.T) {
	w := newTestWorld(t)
	path := filepath.Join(t.TempDir(), "gw.yaml")
	writeFile(t, path, fmt.Sprintf(reloadBase, "a"))
	g, err := New(WithRegistry(w.reg), WithConfigFile(path, true), WithConfigDebounce(50*time.Millisecond), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	conn := w.conns["plc"]
	waitFor(t, "connector up", 2*time.Second, func() bool { return conn.uplink() != nil })
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the empty file rejected", 5*time.Second, func() bool { return g.Stats().ReloadErrors == 1 })
	st := g.Stats()
	if !strings.Contains(st.LastReloadErr, "empty file") || !strings.Contains(st.LastReloadErr, "every connector (1 running)") ||
		!strings.Contains(st.LastReloadErr, "every sink (2 running)") {
		t.Fatalf("rejection reason %q does not say why", st.LastReloadErr)
	}
	if len(st.Connectors) != 1 || len(st.Sinks) != 2 || st.Reloads != 0 {
		t.Fatalf("after the empty file: %d connectors, %d sinks, %d reloads; want 1, 2, 0", len(st.Connectors), len(st.Sinks), st.Reloads)
	}
	if err := conn.send(t, "d", "t", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "frame through the kept config", 2*time.Second, func() bool { return w.sinks["a"].count() == 1 })
	if conn.connects.Load() != 1 || conn.disconnects.Load() != 0 {
		t.Fatalf("connector restarted: connects=%d disconnects=%d", conn.connects.Load(), conn.disconnects.Load())
	}

	// A configuration that is not empty but drops every sink is refused too.
	noSinks := "connectors:\n  - name: plc\n    codec: num\n    test: {address: \"127.0.0.1:502\"}\ncodecs:\n  - name: num\n    f64: {}\n"
	writeFile(t, path, noSinks)
	waitFor(t, "the sinkless file rejected", 5*time.Second, func() bool { return g.Stats().ReloadErrors == 2 })
	if st := g.Stats(); !strings.Contains(st.LastReloadErr, "every sink (2 running)") || strings.Contains(st.LastReloadErr, "connector") {
		t.Fatalf("rejection reason %q", st.LastReloadErr)
	}
}

// TestWatchReadsOnlyTheCompleteFile writes the file in two steps, in place,
// with a pause between them shorter than the debounce: only the complete
// file is read, once.
func TestWatchReadsOnlyTheCompleteFile(t *testing.T) {
	w := newTestWorld(t)
	path := filepath.Join(t.TempDir(), "gw.yaml")
	writeFile(t, path, fmt.Sprintf(reloadBase, "a"))
	g, err := New(WithRegistry(w.reg), WithConfigFile(path, true), WithConfigDebounce(time.Second), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	conn := w.conns["plc"]
	waitFor(t, "connector up", 2*time.Second, func() bool { return conn.uplink() != nil })

	full := fmt.Sprintf(reloadBase, "b")
	cut := strings.Index(full, "    test:") // a connector without its kind: invalid on its own
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(full[:cut]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a slow writer, not a wait for a condition
	if _, err := f.WriteString(full[cut:]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the complete file applied", 5*time.Second, func() bool { return g.Stats().Reloads == 1 })
	if st := g.Stats(); st.ReloadErrors != 0 {
		t.Fatalf("the half-written file was read: %d reload errors (%s)", st.ReloadErrors, st.LastReloadErr)
	}
	if err := conn.send(t, "d", "t", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "frame on the new route", 2*time.Second, func() bool { return w.sinks["b"].count() == 1 })
}

// TestAllowEmptyReload applies an empty file when the running configuration
// or an option allows it.
func TestAllowEmptyReload(t *testing.T) {
	for _, tc := range []struct {
		name string
		yaml string
		opts []Option
	}{
		{"yaml key", "gateway:\n  allow_empty_reload: true\n" + fmt.Sprintf(reloadBase, "a"), nil},
		{"option", fmt.Sprintf(reloadBase, "a"), []Option{WithAllowEmptyReload(true)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newTestWorld(t)
			path := filepath.Join(t.TempDir(), "gw.yaml")
			writeFile(t, path, tc.yaml)
			g, err := New(append([]Option{WithRegistry(w.reg), WithConfigFile(path, false), WithLogger(quietLogger())}, tc.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			run(t, g)
			conn := w.conns["plc"]
			waitFor(t, "connector up", 2*time.Second, func() bool { return conn.uplink() != nil })
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			if err := g.Reload(context.Background()); err != nil {
				t.Fatalf("allowed empty reload: %v", err)
			}
			if st := g.Stats(); len(st.Connectors) != 0 || len(st.Sinks) != 0 || st.Reloads != 1 {
				t.Fatalf("after the allowed empty reload: %d connectors, %d sinks, %d reloads", len(st.Connectors), len(st.Sinks), st.Reloads)
			}
			waitFor(t, "connector stopped", 2*time.Second, func() bool { return conn.disconnects.Load() == 1 })
		})
	}
}

func TestReloadAndStatsKeys(t *testing.T) {
	_, err := ParseConfig([]byte("gateway: {reload_debounce: 2m}\nhealth: {stats_devices: -1}\n"), "gw.yaml")
	for _, want := range []string{"gateway.reload_debounce: want 0 (the default) up to 1m, got 2m0s (gw.yaml:1:",
		"health.stats_devices: want 0..100000, got -1 (gw.yaml:2:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v lacks %q", err, want)
		}
	}
	cfg, err := ParseConfig([]byte("gateway: {reload_debounce: 50ms, allow_empty_reload: true}\nhealth: {stats_devices: 0}\n"), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(WithConfig(cfg), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	if g.s.debounce != 50*time.Millisecond || g.s.statsDevices != 0 {
		t.Fatalf("debounce %v, stats devices %d; want 50ms and 0", g.s.debounce, g.s.statsDevices)
	}
	if err := g.ApplyConfig(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if len(g.config.staticDiff(cfg)) != 0 {
		t.Fatalf("the same config differs from itself: %v", g.config.staticDiff(cfg))
	}
}

// TestReloadKeepsDeadLetterSink: a reload that would remove the sink named
// by gateway.dead_letter.sink is refused (its dead letters would be lost);
// one that keeps it applies.
func TestReloadKeepsDeadLetterSink(t *testing.T) {
	w := newTestWorld(t)
	path := filepath.Join(t.TempDir(), "gw.yaml")
	withDead := "gateway:\n  dead_letter: {sink: b}\n"
	writeFile(t, path, withDead+fmt.Sprintf(reloadBase, "a"))
	g, err := New(WithRegistry(w.reg), WithConfigFile(path, false), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	// The dead-letter setting is read at start; a file that drops both it
	// and the sink must not leave dead letters without a place.
	noB := strings.Replace(fmt.Sprintf(reloadBase, "a"), "  - name: b\n    collect: {}\n", "", 1)
	writeFile(t, path, noB)
	err = g.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), `sink "b" is the dead-letter sink`) {
		t.Fatalf("reload without the dead-letter sink: err = %v", err)
	}
	if st := g.Stats(); len(st.Sinks) != 2 {
		t.Fatalf("after the refused reload: %d sinks, want 2", len(st.Sinks))
	}
	writeFile(t, path, withDead+fmt.Sprintf(reloadBase, "a, b"))
	if err := g.Reload(context.Background()); err != nil {
		t.Fatalf("reload that keeps the dead-letter sink: %v", err)
	}
}
