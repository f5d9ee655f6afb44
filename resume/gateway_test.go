package resume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

type recordingSink struct {
	mu   sync.Mutex
	fail bool
	ids  map[gateway.MessageID]int
}

func (s *recordingSink) Publish(ctx context.Context, msgs []*gateway.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("upstream down")
	}
	for _, m := range msgs {
		s.ids[m.ID]++
	}
	return nil
}

func (s *recordingSink) set(fail bool) { s.mu.Lock(); s.fail = fail; s.mu.Unlock() }
func (s *recordingSink) count() int    { s.mu.Lock(); defer s.mu.Unlock(); return len(s.ids) }

// runGateway runs g until the test ends.
func runGateway(t *testing.T, g *gateway.Gateway) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// injectIDs hands g n one-byte frames of device "d" with the ids
// idOf(from) to idOf(from+n-1).
func injectIDs(t *testing.T, g *gateway.Gateway, from, n uint64) {
	t.Helper()
	for i := from; i < from+n; i++ {
		f := gateway.AcquireFrame()
		f.Device, f.Topic, f.ID = "d", "t", idOf(i)
		f.Payload = append(f.Payload, 'x')
		if err := g.Inject(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
}

// spyRegistry has the "sqlite" store kind and keeps what it built.
func spyRegistry(t *testing.T) (*gateway.Registry, *gateway.Store) {
	reg := gateway.NewRegistry()
	built := new(gateway.Store)
	if err := reg.AddStore("sqlite", func(spec gateway.Section) (gateway.Store, error) {
		st, err := buildSQLite(spec)
		*built = st
		return st, err
	}); err != nil {
		t.Fatal(err)
	}
	return reg, built
}

// TestGatewayEdgeModeFromYAML builds an edge gateway whose store comes from
// `store: {sqlite: {path: ...}}`: frames are durable before Deliver
// returns, survive an outage of the sink, and leave the store once
// delivered.
func TestGatewayEdgeModeFromYAML(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	cfg, err := gateway.ParseConfig([]byte(fmt.Sprintf("gateway:\n  mode: edge\nstore:\n  sqlite:\n    path: %s\n    synchronous: FULL\n", path)), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{ids: map[gateway.MessageID]int{}}
	sink.set(true)
	g, err := gateway.New(gateway.WithConfig(cfg), gateway.WithRegistry(reg), gateway.WithSink("up", sink), gateway.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	runGateway(t, g)
	// A second handle on the same file shows what is durable.
	peek, err := OpenSQLiteStore(SQLiteConfig{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer peek.Close()
	const n = 40
	for i := 0; i < n; i++ {
		f := gateway.AcquireFrame()
		f.Device, f.Topic, f.ID = "d", "t", idOf(uint64(i+1))
		f.Payload = append(f.Payload, 'x')
		if err := g.Inject(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		var rows int
		if err := peek.db.QueryRow("SELECT count(*) FROM records").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows == 0 {
			t.Fatalf("frame %d acknowledged but nothing is in the store", i)
		}
	}
	sink.set(false)
	waitUntil(t, "all delivered", func() bool { return sink.count() == n })
	waitUntil(t, "store empty", func() bool {
		var rows int
		_ = peek.db.QueryRow("SELECT count(*) FROM records").Scan(&rows)
		return rows == 0
	})
	for i := 0; i < n; i++ {
		if sink.ids[idOf(uint64(i+1))] == 0 {
			t.Fatalf("message %d lost", i+1)
		}
	}
}

func TestRegisterRejectsBadConfig(t *testing.T) {
	for name, c := range map[string]struct{ yaml, want string }{
		"no path":   {"store:\n  sqlite: {synchronous: FULL}\n", "path"},
		"sync":      {"store:\n  sqlite: {path: /tmp/x.db, synchronous: SOMETIMES}\n", "synchronous"},
		"overflow":  {"store:\n  sqlite: {path: /tmp/x.db, overflow: maybe}\n", "overflow"},
		"unknown":   {"store:\n  sqlite: {path: /tmp/x.db, colour: red}\n", "colour"},
		"no dir":    {"store:\n  sqlite: {path: /nonexistent/dir/x.db}\n", "directory"},
		"drain key": {"store:\n  sqlite: {path: /tmp/x.db, drain: {batchez: 3}}\n", "batchez"},
		"drain neg": {"store:\n  sqlite: {path: /tmp/x.db, drain: {in_flight: -1}}\n", "drain.in_flight"},
		"backoff":   {"store:\n  sqlite: {path: /tmp/x.db, drain: {backoff_min: 2s, backoff_max: 1s}}\n", "drain.backoff_min"},
		"no probe":  {"store:\n  sqlite: {path: /tmp/x.db, drain: {probes: {interval: 1s}}}\n", "no probe configured"},
		"icmp":      {"store:\n  sqlite: {path: /tmp/x.db, drain: {probes: {icmp: cloud.example}}}\n", "drain.probes.icmp"},
		"http":      {"store:\n  sqlite: {path: /tmp/x.db, drain: {probes: {http_head: 'ftp://x/'}}}\n", "drain.probes.http_head"},
		"heartbeat": {"store:\n  sqlite: {path: /tmp/x.db, drain: {probes: {heartbeat: cloud.example}}}\n", "drain.probes.heartbeat"},
		"quorum":    {"store:\n  sqlite: {path: /tmp/x.db, drain: {probes: {icmp: 192.0.2.1, quorum: 2}}}\n", "drain.probes.quorum"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := gateway.ParseConfig([]byte(c.yaml), "gw.yaml")
			if err == nil {
				reg := gateway.NewRegistry()
				_ = Register(reg)
				_, err = gateway.New(gateway.WithConfig(cfg), gateway.WithRegistry(reg), gateway.WithLogger(quietLogger()))
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to name %q", err, c.want)
			}
		})
	}
}

// switchProbe is a probe the test turns on and off.
type switchProbe struct{ down atomic.Bool }

func (p *switchProbe) Name() string { return "switch" }
func (p *switchProbe) Probe(ctx context.Context) (time.Duration, error) {
	if p.down.Load() {
		return 0, errors.New("switched off")
	}
	return time.Millisecond, nil
}

// TestEdgeStoreGatesLiveTraffic runs a gateway whose store is an EdgeStore
// with a probe: while the probe says the link is down the machine is
// Offline, live publishes are refused at once and spilled, and when the
// link returns the drainer replays them; nothing is lost or duplicated.
func TestEdgeStoreGatesLiveTraffic(t *testing.T) {
	probe := &switchProbe{}
	es, err := NewEdgeStore(EdgeConfig{
		Store:   SQLiteConfig{Path: filepath.Join(t.TempDir(), "q.db"), Logger: quietLogger(), MinFreeBytes: -1},
		Drain:   DrainerConfig{Logger: quietLogger(), Backoff: Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}},
		Monitor: MonitorConfig{Probes: []Probe{probe}, Interval: 20 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer es.Close()
	walk := make(chan State, 64)
	es.Machine().Watch(walk)
	sink := &recordingSink{ids: map[gateway.MessageID]int{}}
	g, err := gateway.New(gateway.WithMode(gateway.ModeEdge), gateway.WithStore(es), gateway.WithSink("up", sink),
		gateway.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	runGateway(t, g)
	injectIDs(t, g, 1, 50)
	waitUntil(t, "first 50 delivered", func() bool { return sink.count() == 50 })
	probe.down.Store(true)
	waitState := func(want State) {
		t.Helper()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case s := <-walk:
				if s == want {
					return
				}
			case <-deadline:
				t.Fatalf("state %s not reached", want)
			}
		}
	}
	waitState(Offline)
	// The gateway's Stats (and /statz) carry the EdgeStore's report.
	rep, ok := g.Stats().Drain.(EdgeStatus)
	if !ok || rep.State != "offline" || len(rep.Probes) != 1 || rep.Probes[0].Up || rep.Transitions["online->offline"]+rep.Transitions["degraded->offline"] == 0 {
		t.Fatalf("Stats.Drain = %#v, want the offline report with one probe down", g.Stats().Drain)
	}
	if js, err := json.Marshal(g.Stats()); err != nil || !strings.Contains(string(js), `"drain":{"state":"offline"`) {
		t.Fatalf("stats JSON %s (err %v): want the drain report", js, err)
	}
	injectIDs(t, g, 51, 50)
	waitUntil(t, "offline messages refused and spilled", func() bool { return es.Drainer().Stats().Refused > 0 })
	if got := sink.count(); got != 50 {
		t.Fatalf("the sink took %d messages while Offline, want 50", got)
	}
	probe.down.Store(false)
	waitState(Recovering)
	waitUntil(t, "all 100 delivered", func() bool { return sink.count() == 100 })
	waitState(Online)
	waitUntil(t, "store empty", func() bool { return es.Stats().Rows == 0 })
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for id, n := range sink.ids {
		if n != 1 {
			t.Errorf("message %v delivered %d times", id, n)
		}
	}
	if st := es.Drainer().Stats(); st.Acked == 0 {
		t.Errorf("drainer stats %+v: the backlog did not go through it", st)
	}
}

// TestEdgeStoreFromYAML: the drain section makes the sqlite store kind
// build an EdgeStore, which the gateway uses as its drainer.
func TestEdgeStoreFromYAML(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	yml := fmt.Sprintf("gateway:\n  mode: edge\nstore:\n  sqlite:\n    path: %s\n    drain:\n      batch: 8\n      in_flight: 2\n      backoff_min: 10ms\n      backoff_max: 50ms\n", path)
	cfg, err := gateway.ParseConfig([]byte(yml), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg, built := spyRegistry(t)
	sink := &recordingSink{ids: map[gateway.MessageID]int{}}
	sink.set(true)
	g, err := gateway.New(gateway.WithConfig(cfg), gateway.WithRegistry(reg), gateway.WithSink("up", sink), gateway.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	es, ok := (*built).(*EdgeStore)
	if !ok {
		t.Fatalf("the drain section built a %T, want *EdgeStore", *built)
	}
	runGateway(t, g)
	injectIDs(t, g, 1, 30)
	waitUntil(t, "spilled", func() bool { return g.Stats().Spilled > 0 })
	sink.set(false)
	waitUntil(t, "all delivered", func() bool { return sink.count() == 30 })
	// Spilled records went out in batches of at most 8 through the
	// drainer: the gateway counts them as replayed.
	if g.Stats().Replayed == 0 || es.Drainer().Stats().Acked == 0 {
		t.Fatalf("replayed %d, drainer %+v: the backlog did not go through the drainer", g.Stats().Replayed, es.Drainer().Stats())
	}
}

func TestDrainerLeavesFrameRecords(t *testing.T) {
	st, _ := openTestStore(t, nil)
	frame := []gateway.Record{{Sink: gateway.FrameRecord, Priority: gateway.PriorityNormal, Payload: []byte{1, 2, 3}}}
	if err := st.Append(context.Background(), frame); err != nil {
		t.Fatal(err)
	}
	_ = st.Release(context.Background(), frame)
	fillStore(t, st, 10, "up")
	sink := &recordingSink{ids: map[gateway.MessageID]int{}}
	d, _ := NewDrainer(DrainerConfig{Store: st, Sink: sink, Logger: quietLogger(), Poll: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	waitUntil(t, "drained", func() bool { return sink.count() == 10 && st.Stats().Rows == 1 })
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	if st.Stats().Rows != 1 {
		t.Fatalf("the frame record was dropped by the drainer")
	}
}

// TestEdgeStoreYAMLProbes: the probes block builds a monitor with every
// probe named and the quorum given.
func TestEdgeStoreYAMLProbes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	yml := fmt.Sprintf("gateway: {mode: edge}\nstore:\n  sqlite:\n    path: %s\n    drain:\n      probes: {icmp: 127.0.0.1, http_head: \"http://127.0.0.1:9/\", heartbeat: \"127.0.0.1:9\", quorum: 3, interval: 50ms}\n", path)
	cfg, err := gateway.ParseConfig([]byte(yml), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg, built := spyRegistry(t)
	if _, err := gateway.New(gateway.WithConfig(cfg), gateway.WithRegistry(reg), gateway.WithSink("up", &recordingSink{}), gateway.WithLogger(quietLogger())); err != nil {
		t.Fatal(err)
	}
	es, ok := (*built).(*EdgeStore)
	if !ok || es.Monitor() == nil || es.Machine() == nil {
		t.Fatalf("built %T without a monitor and machine", *built)
	}
	defer es.Close()
	var names []string
	for _, p := range es.Monitor().Stats() {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, ","); got != "icmp-echo,http-head,udp-heartbeat" {
		t.Errorf("probes %s", got)
	}
	if es.Monitor().cfg.Quorum != 3 || es.Monitor().cfg.Interval != 50*time.Millisecond {
		t.Errorf("monitor config %+v", es.Monitor().cfg)
	}
}
