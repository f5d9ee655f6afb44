package observe

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/connstats"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/resume"
	"github.com/iotgw/gateway/rules"
)

// expo collects the observer's exposition through its handler.
func expo(t *testing.T, o *Observer) string {
	t.Helper()
	return scrape(t, strings.TrimSuffix(httptestServer(t, o.Handler()), "/metrics"))
}

func mustMatch(t *testing.T, text string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(text) {
			t.Errorf("exposition lacks %s", p)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

// TestStoreMetrics: the SQLite store reports depth, bytes and the age of
// its oldest record.
func TestStoreMetrics(t *testing.T) {
	st, err := resume.NewSQLiteStore(resume.SQLiteConfig{Path: filepath.Join(t.TempDir(), "s.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	recs := []gateway.Record{
		{ID: gateway.NewIDGenerator().Next(), Sink: "up", Payload: []byte("hello"), Enqueued: time.Now().Add(-90 * time.Second)},
		{ID: gateway.NewIDGenerator().Next(), Sink: "up", Payload: []byte("world!"), Enqueued: time.Now()},
	}
	if err := st.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	o, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer o.Shutdown(ctx)
	reg, err := st.RegisterMetrics(o.MeterProvider().Meter("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	text := expo(t, o)
	mustMatch(t, text, `gateway_store_records 2\n`, `gateway_store_size_bytes 11\n`,
		`gateway_store_oldest_age_seconds (8[5-9]|9\d|1\d\d)\.`)
}

// TestRuleMetrics: rule hits and errors per rule.
func TestRuleMetrics(t *testing.T) {
	doc, err := rules.Parse([]byte(`
points: {temperature: float}
rules:
  - {name: hot, match: {topic: "env"}, when: "temperature > 30", sinks: [up]}
  - {name: all, match: {topic: "#"}, sinks: [up]}
`), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.Compile(doc, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []float64{20, 35, 40} {
		m := &gateway.Message{Topic: "env"}
		m.AddPoint("temperature", gateway.Float(v), "")
		set.Route(m, nil)
	}
	o, _ := New()
	defer o.Shutdown(context.Background())
	reg, err := set.RegisterMetrics(o.MeterProvider().Meter("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	mustMatch(t, expo(t, o), `gateway_rule_hits_total\{rule="hot"\} 2\n`, `gateway_rule_hits_total\{rule="all"\} 3\n`,
		`gateway_rule_errors_total\{rule="hot"\} 0\n`)
}

// TestConnectorMetrics: a connector's totals, never per device.
func TestConnectorMetrics(t *testing.T) {
	var tab connstats.Table
	for i := 0; i < 50; i++ {
		tab.Device("dev-" + string(rune('a'+i%26))).Frame(10)
		tab.Total.Frame(10)
	}
	tab.Total.Malformed()
	tab.Total.Reconnect()
	tab.Total.Latency(20 * time.Millisecond)
	o, _ := New()
	defer o.Shutdown(context.Background())
	reg, err := tab.RegisterMetrics(o.MeterProvider().Meter("t"), attribute.String("connector", "plc"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	text := expo(t, o)
	mustMatch(t, text, `gateway_connector_frames_total\{connector="plc"\} 50\n`, `gateway_connector_received_bytes_total\{connector="plc"\} 500\n`,
		`gateway_connector_problems_total\{connector="plc",reason="malformed"\} 1\n`, `gateway_connector_sessions_total\{connector="plc"\} 1\n`,
		`gateway_connector_request_latency_mean_seconds\{connector="plc"\} 0.02\n`)
	if strings.Contains(text, "dev-") {
		t.Fatal("a device id became a label")
	}
}

// TestDrainMetrics: the drain state is one-hot over the machine's states.
func TestDrainMetrics(t *testing.T) {
	st, err := resume.NewSQLiteStore(resume.SQLiteConfig{Path: filepath.Join(t.TempDir(), "s.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	m := resume.NewMachine(resume.MachineConfig{Initial: resume.Offline, Logger: conntest.QuietLogger()})
	d, err := resume.NewDrainer(resume.DrainerConfig{Store: st, Machine: m, Logger: conntest.QuietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	o, _ := New()
	defer o.Shutdown(context.Background())
	reg, err := d.RegisterMetrics(o.MeterProvider().Meter("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	text := expo(t, o)
	mustMatch(t, text, `gateway_drain_state\{state="offline"\} 1\n`, `gateway_drain_state\{state="online"\} 0\n`,
		`gateway_drain_records_total\{state="sent"\} 0\n`)
	if strings.Count(text, "gateway_drain_state{") != 5 {
		t.Fatalf("want 5 drain states:\n%s", text)
	}
}
