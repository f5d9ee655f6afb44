package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCheckConfig checks configurations against a running gateway without
// applying them: a valid one passes and changes nothing, invalid ones
// fail with the reason ApplyConfig would give, and neither counts as a
// reload or restarts the connector.
func TestCheckConfig(t *testing.T) {
	w := newTestWorld(t)
	base, err := ParseConfig([]byte(fmt.Sprintf(reloadBase, "a")), "base.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(WithRegistry(w.reg), WithConfig(base), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	conn := w.conns["plc"]
	waitFor(t, "connector up", 2*time.Second, func() bool { return conn.uplink() != nil })
	ctx := context.Background()
	good, _ := ParseConfig([]byte(fmt.Sprintf(reloadBase, "b")), "good.yaml")
	if err := g.CheckConfig(ctx, good); err != nil {
		t.Fatalf("valid configuration: %v", err)
	}
	for _, c := range []struct{ yaml, want string }{
		{strings.Replace(fmt.Sprintf(reloadBase, "a"), "sinks: [a]", "sinks: [nowhere]", 1), "nowhere"},
		{strings.Replace(fmt.Sprintf(reloadBase, "a"), "codec: num", "codec: missing", 1), "missing"},
		{strings.Replace(fmt.Sprintf(reloadBase, "a"), "f64: {}", "nosuchkind: {}", 1), "nosuchkind"},
		{"connectors: []\n", "every connector"},
	} {
		cfg, err := ParseConfig([]byte(c.yaml), "bad.yaml")
		if err == nil {
			err = g.CheckConfig(ctx, cfg)
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want an error naming %s", err, c.want)
		}
	}
	if st := g.Stats(); st.Reloads != 0 || st.ReloadErrors != 0 {
		t.Fatalf("checks counted as reloads: %d, %d", st.Reloads, st.ReloadErrors)
	}
	if conn.connects.Load() != 1 || conn.disconnects.Load() != 0 {
		t.Fatalf("connector restarted: connects=%d disconnects=%d", conn.connects.Load(), conn.disconnects.Load())
	}
	// The checked configuration still applies.
	if err := g.ApplyConfig(ctx, good); err != nil {
		t.Fatal(err)
	}
}

func TestParseSection(t *testing.T) {
	sec, err := ParseSection([]byte("ota:\n  dir: x\n  probaton: 3s\n"), "ota.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		OTA struct {
			Dir       string        `yaml:"dir"`
			Probation time.Duration `yaml:"probation"`
		} `yaml:"ota"`
	}
	err = sec.Decode(&v)
	if err == nil || !strings.Contains(err.Error(), "ota.probaton") || !strings.Contains(err.Error(), "ota.yaml:3") {
		t.Fatalf("got %v, want the unknown key with its path and position", err)
	}
	if _, err := ParseSection([]byte("a: [\n"), "bad.yaml"); err == nil {
		t.Fatal("broken YAML accepted")
	}
}
