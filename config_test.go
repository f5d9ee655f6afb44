package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testRegistry knows a "test" connector kind, a "collect" sink kind and an
// "f64" codec kind, with configs strict enough to exercise error paths.
type testWorld struct {
	reg   *Registry
	conns map[string]*testConnector // by name, latest built
	sinks map[string]*collectSink
	built atomic.Int32
}

type testConnCfg struct {
	Address string        `yaml:"address"`
	Period  time.Duration `yaml:"period"`
	Devices int           `yaml:"devices"`
}

func newTestWorld(t *testing.T) *testWorld {
	w := &testWorld{reg: NewRegistry(), conns: map[string]*testConnector{}, sinks: map[string]*collectSink{}}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.reg.AddConnector("test", func(name string, spec Section) (DeviceConnector, error) {
		var c testConnCfg
		if err := spec.Decode(&c); err != nil {
			return nil, err
		}
		if c.Address != "" {
			if _, _, err := net.SplitHostPort(c.Address); err != nil {
				return nil, spec.Errorf("address", "missing port")
			}
		}
		w.built.Add(1)
		tc := &testConnector{}
		w.conns[name] = tc
		return tc, nil
	}))
	must(w.reg.AddSink("collect", func(name string, spec Section) (Sink, error) {
		var c struct {
			Label string `yaml:"label"`
		}
		if err := spec.Decode(&c); err != nil {
			return nil, err
		}
		s := newCollectSink()
		w.sinks[name] = s
		return s, nil
	}))
	must(w.reg.AddCodec("f64", func(name string, spec Section) (Codec, error) { return f64Codec, nil }))
	return w
}

func TestConfigErrorsNameTheField(t *testing.T) {
	w := newTestWorld(t)
	cases := []struct {
		name, yaml, want string
	}{
		{"unknown top key", "gatway:\n  mode: edge\n", "gatway: unknown key"},
		{"unknown nested key", "gateway:\n  mod: edge\n", "gateway.mod: unknown key"},
		{"bad mode", "gateway:\n  mode: cloud\n", `gateway.mode: unknown mode "cloud"`},
		{"edge without store", "gateway:\n  mode: edge\n", "gateway.mode: edge needs a store"},
		{"bad qos", "mqtt:\n  qos: 3\n", "mqtt.qos: must be 0, 1 or 2"},
		{"qos not int", "mqtt:\n  qos: high\n", `mqtt.qos: want an integer, got "high"`},
		{"bad overflow", "gateway:\n  overflow: spill\n", "gateway.overflow: unknown overflow policy"},
		{"bad duration", "gateway:\n  shutdown_timeout: 5\n", "gateway.shutdown_timeout: want a duration"},
		{"bool type", "rules:\n  enabled: yes please\n", "rules.enabled: want true or false"},
		{"health port", "health:\n  address: localhost\n", "health.address: want host:port"},
		{"list expected", "connectors: {a: 1}\n", "connectors: want a list"},
		{"missing name", "connectors:\n  - test: {}\n", "connectors[0].name: required"},
		{"missing kind", "connectors:\n  - name: a\n", "connectors[0]: missing the kind key"},
		{"two kinds", "connectors:\n  - name: a\n    test: {}\n    other: {}\n", "connectors[0]: more than one kind key"},
		{"dup name", "connectors:\n  - name: a\n    test: {}\n  - name: a\n    test: {}\n", `connectors[1].name: duplicate name "a"`},
		{"unknown codec ref", "connectors:\n  - name: a\n    codec: nope\n    test: {}\n", `connectors[0].codec: unknown codec "nope"`},
		{"codec on sink", "sinks:\n  - name: s\n    codec: raw\n    collect: {}\n", "sinks[0].codec: only connectors take a codec"},
		{"route unknown sink", "routes:\n  - topic: a/#\n    sinks: [x]\n", `routes[0].sinks[0]: unknown sink "x"`},
		{"route bad filter", "sinks:\n  - name: s\n    collect: {}\nroutes:\n  - topic: a/#/b\n    sinks: [s]\n", "routes[0].topic: filter \"a/#/b\""},
		{"route no sinks", "routes:\n  - topic: a\n", "routes[0].sinks: required"},
		{"yaml syntax", "gateway: [\n", "yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.yaml), "gw.yaml")
			if err == nil {
				t.Fatalf("accepted:\n%s", c.yaml)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
	// Errors that need the registry: the factory's own validation.
	factoryCases := []struct {
		name, yaml, want string
	}{
		{"factory semantic", "connectors:\n  - name: a\n  - name: b\n  - name: plc\n    test:\n      address: 10.0.0.1\n", "connectors[2].test.address: missing port"},
		{"factory unknown key", "connectors:\n  - name: a\n    test:\n      adress: x:1\n", "connectors[0].test.adress: unknown key"},
		{"factory type", "connectors:\n  - name: a\n    test:\n      devices: many\n", `connectors[0].test.devices: want an integer, got "many"`},
		{"unknown kind", "connectors:\n  - name: a\n    modbus: {}\n", `connectors[0].modbus: unknown connector kind "modbus" (this build knows: test)`},
		{"unknown sink kind", "sinks:\n  - name: a\n    kafka: {}\n", `sinks[0].kafka: unknown sink kind "kafka"`},
		{"rules without engine", "rules:\n  enabled: true\n", "rules.enabled: no rules engine"},
	}
	for _, c := range factoryCases {
		t.Run(c.name, func(t *testing.T) {
			y := c.yaml
			if c.name == "factory semantic" { // entries 0 and 1 need a kind to parse
				y = "connectors:\n  - name: a\n    test: {}\n  - name: b\n    test: {}\n  - name: plc\n    test:\n      address: 10.0.0.1\n"
			}
			cfg, err := ParseConfig([]byte(y), "gw.yaml")
			if err == nil {
				_, err = New(WithRegistry(w.reg), WithConfig(cfg), WithLogger(quietLogger()))
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v does not contain %q", err, c.want)
			}
		})
	}
}

func TestConfigErrorCarriesPosition(t *testing.T) {
	_, err := ParseConfig([]byte("gateway:\n  mode: edge\n  queue_size: -1\n"), "gw.yaml")
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a ConfigError", err)
	}
	if !strings.Contains(err.Error(), "gw.yaml:") {
		t.Fatalf("error %q lacks the file position", err)
	}
	// Every problem is reported, not just the first.
	if !strings.Contains(err.Error(), "gateway.queue_size") || !strings.Contains(err.Error(), "gateway.mode") {
		t.Fatalf("error %q should list both problems", err)
	}
}

func TestConfigFullFileBuildsGateway(t *testing.T) {
	w := newTestWorld(t)
	y := `
gateway:
  name: gw-1
  mode: direct
  queue_size: 128
  workers: 2
  overflow: drop-oldest
  shutdown_timeout: 1s
mqtt:
  qos: 0
health:
  address: 127.0.0.1:0
codecs:
  - name: num
    f64: {}
connectors:
  - name: plc
    codec: num
    test: {address: "127.0.0.1:502", period: 100ms}
sinks:
  - name: hot
    collect: {}
  - name: cold
    collect: {}
routes:
  - name: alarms
    topic: "plant/+/alarm/#"
    sinks: [hot]
  - topic: "#"
    sinks: [cold]
`
	cfg, err := ParseConfig([]byte(y), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(WithRegistry(w.reg), WithConfig(cfg), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	conn := w.conns["plc"]
	waitFor(t, "connector up", 2*time.Second, func() bool { return conn.uplink() != nil })
	if err := conn.send(t, "d1", "plant/a/alarm/high", 1); err != nil {
		t.Fatal(err)
	}
	if err := conn.send(t, "d1", "plant/a/temp", 2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "routed", 2*time.Second, func() bool { return w.sinks["hot"].count() == 1 && w.sinks["cold"].count() == 2 })
	if got := w.sinks["hot"].got[0]; got.v != 1 {
		t.Fatalf("hot sink got %v, want the alarm", got.v)
	}
	if addr := g.HealthAddr(); addr == "" {
		t.Fatal("health server not started from config")
	}
}

const reloadBase = `
codecs:
  - name: num
    f64: {}
connectors:
  - name: plc
    codec: num
    test: {address: "127.0.0.1:502"}
sinks:
  - name: a
    collect: {}
  - name: b
    collect: {}
routes:
  - topic: "#"
    sinks: [%s]
`

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestReloadSwapsRouteWithoutLossAndKeepsSession(t *testing.T) {
	w := newTestWorld(t)
	path := filepath.Join(t.TempDir(), "gw.yaml")
	writeFile(t, path, fmt.Sprintf(reloadBase, "a"))
	g, err := New(WithRegistry(w.reg), WithConfigFile(path, false), WithLogger(quietLogger()), WithWorkers(2))
	if err != nil {
		t.Fatal(err)
	}
	stop := run(t, g)
	conn := w.conns["plc"]
	waitFor(t, "connector up", 2*time.Second, func() bool { return conn.uplink() != nil })
	up := conn.uplink()

	// Produce continuously while the route flips a -> b -> a -> b.
	const n = 20000
	done := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := up.Deliver(context.Background(), frame(fmt.Sprint("d", i%7), "t", float64(i))); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i, target := range []string{"b", "a", "b"} {
		time.Sleep(time.Duration(i+1) * time.Millisecond)
		writeFile(t, path, fmt.Sprintf(reloadBase, target))
		if err := g.Reload(context.Background()); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all delivered", 5*time.Second, func() bool { return w.sinks["a"].count()+w.sinks["b"].count() == n })
	stop()
	if w.sinks["b"].count() == 0 {
		t.Fatal("route never switched to b")
	}
	seen := make([]bool, n)
	for _, s := range []*collectSink{w.sinks["a"], w.sinks["b"]} {
		for _, v := range s.values() {
			if seen[int(v)] {
				t.Fatalf("value %v delivered twice", v)
			}
			seen[int(v)] = true
		}
	}
	if w.conns["plc"] != conn || conn.connects.Load() != 1 || w.built.Load() != 1 {
		t.Fatalf("connector restarted by a route change: connects=%d built=%d", conn.connects.Load(), w.built.Load())
	}
	if st := g.Stats(); st.Reloads != 3 || st.FramesDropped != 0 || st.Unrouted != 0 {
		t.Fatalf("stats after reloads: %+v", st)
	}
}

func TestInvalidReloadKeepsLastGoodConfig(t *testing.T) {
	w := newTestWorld(t)
	path := filepath.Join(t.TempDir(), "gw.yaml")
	writeFile(t, path, fmt.Sprintf(reloadBase, "a"))
	g, err := New(WithRegistry(w.reg), WithConfigFile(path, false), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	conn := w.conns["plc"]
	waitFor(t, "connector up", 2*time.Second, func() bool { return conn.uplink() != nil })

	bad := []string{
		fmt.Sprintf(reloadBase, "nope"), // unknown sink
		strings.Replace(fmt.Sprintf(reloadBase, "a"), `address: "127.0.0.1:502"`, `address: "127.0.0.1"`, 1), // factory rejects
		"connectors: [\n", // syntax
	}
	for i, y := range bad {
		writeFile(t, path, y)
		err := g.Reload(context.Background())
		if err == nil {
			t.Fatalf("bad reload %d accepted", i)
		}
		if !strings.Contains(err.Error(), "keeping last good config") {
			t.Fatalf("reload error %q does not say the old config stays", err)
		}
	}
	if err := conn.send(t, "d", "t", 7); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "old route still works", 2*time.Second, func() bool { return w.sinks["a"].count() == 1 })
	st := g.Stats()
	if st.ReloadErrors != 3 || st.LastReloadErr == "" || conn.connects.Load() != 1 {
		t.Fatalf("after rejected reloads: %+v connects=%d", st, conn.connects.Load())
	}
}

func TestReloadRestartsOnlyChangedConnectors(t *testing.T) {
	w := newTestWorld(t)
	two := `
connectors:
  - name: keep
    test: {address: "127.0.0.1:1"}
  - name: change
    test: {address: "127.0.0.1:%d"}
`
	path := filepath.Join(t.TempDir(), "gw.yaml")
	writeFile(t, path, fmt.Sprintf(two, 2))
	g, err := New(WithRegistry(w.reg), WithConfigFile(path, true), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	keep, old := w.conns["keep"], w.conns["change"]
	waitFor(t, "both up", 2*time.Second, func() bool { return keep.uplink() != nil && old.uplink() != nil })
	// Comments and layout alone are not a change.
	writeFile(t, path, "# same thing\n"+strings.ReplaceAll(fmt.Sprintf(two, 2), "{address: \"127.0.0.1:1\"}", "\n      address: 127.0.0.1:1"))
	waitFor(t, "watched reload", 3*time.Second, func() bool { return g.Stats().Reloads == 1 })
	if w.built.Load() != 2 {
		t.Fatalf("cosmetic change rebuilt connectors: built=%d", w.built.Load())
	}
	writeFile(t, path, fmt.Sprintf(two, 3))
	waitFor(t, "watched reload", 3*time.Second, func() bool { return g.Stats().Reloads == 2 })
	waitFor(t, "new connector up", 2*time.Second, func() bool { return w.conns["change"] != old && w.conns["change"].uplink() != nil })
	if old.disconnects.Load() != 1 {
		t.Fatalf("changed connector not stopped: disconnects=%d", old.disconnects.Load())
	}
	if keep.connects.Load() != 1 || keep.disconnects.Load() != 0 {
		t.Fatalf("unchanged connector touched: connects=%d disconnects=%d", keep.connects.Load(), keep.disconnects.Load())
	}
}

func TestReloadReplacesBrokenSinkWithoutLoss(t *testing.T) {
	w := newTestWorld(t)
	y := `
codecs:
  - name: num
    f64: {}
sinks:
  - name: up
    collect: {label: %s}
`
	path := filepath.Join(t.TempDir(), "gw.yaml")
	writeFile(t, path, fmt.Sprintf(y, "v1"))
	g, err := New(WithRegistry(w.reg), WithConfigFile(path, false), WithLogger(quietLogger()), WithSinkQueueSize(8), WithQueueSize(8))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	broken := w.sinks["up"]
	broken.fail.Store(true)
	for i := 0; i < 20; i++ { // more than the queues hold: producers block on the broken sink
		go func(i int) { _ = g.Inject(context.Background(), frame(fmt.Sprint(i), "t", float64(i))) }(i)
	}
	waitFor(t, "sink failing", 2*time.Second, func() bool { return broken.calls.Load() > 0 })
	writeFile(t, path, fmt.Sprintf(y, "v2"))
	if err := g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	fixed := w.sinks["up"]
	if fixed == broken {
		t.Fatal("sink not rebuilt")
	}
	waitFor(t, "all 20 through the replacement", 5*time.Second, func() bool { return fixed.count() == 20 })
}

func TestReloadRemovingSinkKeepsTotals(t *testing.T) {
	w := newTestWorld(t)
	path := filepath.Join(t.TempDir(), "gw.yaml")
	writeFile(t, path, fmt.Sprintf(reloadBase, "b"))
	g, err := New(WithRegistry(w.reg), WithConfigFile(path, false), WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	conn := w.conns["plc"]
	waitFor(t, "connector up", 2*time.Second, func() bool { return conn.uplink() != nil })
	for i := 0; i < 10; i++ {
		if err := conn.send(t, "d", "t", float64(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "delivered to b", 2*time.Second, func() bool { return w.sinks["b"].count() == 10 })
	noB := strings.Replace(strings.Replace(fmt.Sprintf(reloadBase, "a"), "  - name: b\n    collect: {}\n", "", 1), "", "", 1)
	writeFile(t, path, noB)
	if err := g.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := g.Stats(); st.Published != 10 || len(st.Sinks) != 1 {
		t.Fatalf("after removing sink b: published=%d sinks=%d, want 10 and 1", st.Published, len(st.Sinks))
	}
}
