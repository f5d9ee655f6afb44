package observe

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

// countSink acknowledges every message and counts them.
type countSink struct{ n atomic.Int64 }

func (s *countSink) Publish(_ context.Context, msgs []*gateway.Message) error {
	s.n.Add(int64(len(msgs)))
	return nil
}

// metricConn is a connector that publishes one instrument of its own.
type metricConn struct{ sessions atomic.Int64 }

func (c *metricConn) Connect(context.Context, gateway.Uplink) error { c.sessions.Add(1); return nil }
func (c *metricConn) Disconnect(context.Context) error              { c.sessions.Add(-1); return nil }
func (c *metricConn) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	g, err := m.Int64ObservableGauge("test.connector.sessions",
		metric.WithDescription("Open sessions of the test connector."), metric.WithUnit("{session}"))
	if err != nil {
		return nil, err
	}
	a := metric.WithAttributes(label...)
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(g, c.sessions.Load(), a)
		return nil
	}, g)
}

type running struct {
	g    *gateway.Gateway
	sink *countSink
	obs  *Observer
	url  string
}

// runObserved starts a gateway wired to a new Observer; both stop at the
// end of the test.
func runObserved(t testing.TB, opts ...Option) *running {
	t.Helper()
	obs, err := New(append([]Option{WithLogger(conntest.QuietLogger())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	sink := &countSink{}
	gopts := append(obs.GatewayOptions(),
		gateway.WithSink("up", sink), gateway.WithConnector("plc", &metricConn{}),
		gateway.WithHealthAddress("127.0.0.1:0"), gateway.WithLogger(conntest.QuietLogger()))
	g, err := gateway.New(gopts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
		_ = obs.Shutdown(context.Background())
	})
	conntest.Eventually(t, 5*time.Second, "health server", func() bool { return g.HealthAddr() != "" })
	return &running{g: g, sink: sink, obs: obs, url: "http://" + g.HealthAddr()}
}

func (r *running) inject(t testing.TB, n int, device func(i int) string) {
	t.Helper()
	want := r.sink.n.Load() + int64(n)
	for i := 0; i < n; i++ {
		f := gateway.AcquireFrame()
		f.Device, f.Topic, f.Connector = device(i), "env", "plc"
		f.Payload = append(f.Payload[:0], "21.5"...)
		if err := r.g.Inject(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	conntest.Eventually(t, 30*time.Second, "messages published", func() bool { return r.sink.n.Load() >= want })
}

func scrape(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// series returns the sample lines of an exposition.
func series(expo string) []string {
	var out []string
	for _, l := range strings.Split(expo, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

func TestMetricsEndpoint(t *testing.T) {
	r := runObserved(t)
	r.inject(t, 50, func(i int) string { return fmt.Sprintf("dev-%d", i%5) })
	expo := scrape(t, r.url)
	for _, want := range []string{
		`gateway_plane_messages_total{plane="ingress"} 50`,
		`gateway_plane_messages_total{plane="publish"} 50`,
		`gateway_sink_published_total{sink="up"} 50`,
		`gateway_drops_total{reason="ingress_full"} 0`,
		`gateway_component_up{connector="plc"} 1`,
		`gateway_publish_latency_seconds_count{sink="up"} `,
		`test_connector_sessions{connector="plc"} 1`,
		`# HELP gateway_queue_depth `,
		`target_info{service_name="gatewayd"} 1`,
	} {
		if !strings.Contains(expo, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(expo)
	}
	// Every instrument has a description and a unit.
	for _, l := range strings.Split(expo, "\n") {
		if strings.HasPrefix(l, "# HELP ") && len(strings.Fields(l)) < 4 {
			t.Errorf("no description: %s", l)
		}
	}
}

// TestMetricsPromtoolCheck lints a real scrape with promtool check metrics.
func TestMetricsPromtoolCheck(t *testing.T) {
	promtool := testenv.RequireCommand(t, "promtool")
	r := runObserved(t)
	r.inject(t, 20, func(i int) string { return "dev" })
	expo := scrape(t, r.url)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(expo)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s\n--- exposition:\n%s", err, out, expo)
	}
}

// TestMetricsCardinality feeds 100,000 distinct device ids: the number of
// series on /metrics does not change, and no device id is a label.
func TestMetricsCardinality(t *testing.T) {
	r := runObserved(t)
	r.inject(t, 100, func(i int) string { return "warm" })
	before := series(scrape(t, r.url))
	r.inject(t, 100_000, func(i int) string { return fmt.Sprintf("dev-%06d", i) })
	afterExpo := scrape(t, r.url)
	after := series(afterExpo)
	if len(after) != len(before) {
		t.Fatalf("series: %d before, %d after 100000 devices\n%s", len(before), len(after), afterExpo)
	}
	if strings.Contains(afterExpo, "dev-0") {
		t.Fatal("a device id became a label")
	}
	if !strings.Contains(afterExpo, `gateway_plane_messages_total{plane="publish"} 100100`) {
		t.Fatalf("publish count wrong:\n%s", afterExpo)
	}
}

// TestMetricsSeriesCap: an instrument fed unbounded labels is capped, with
// an overflow series.
func TestMetricsSeriesCap(t *testing.T) {
	obs, err := New(WithCardinalityLimit(10))
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Shutdown(context.Background())
	c, err := obs.MeterProvider().Meter("t").Int64Counter("test.unbounded", metric.WithDescription("d"), metric.WithUnit("1"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		c.Add(context.Background(), 1, metric.WithAttributes(attribute.Int("id", i)))
	}
	rec := &bytes.Buffer{}
	srv := httptestServer(t, obs.Handler())
	resp, err := http.Get(srv)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(rec, resp.Body)
	resp.Body.Close()
	var n int
	var overflow string
	for _, l := range series(rec.String()) {
		if strings.HasPrefix(l, "test_unbounded_total") {
			n++
			if strings.Contains(l, `otel_metric_overflow="true"`) {
				overflow = l
			}
		}
	}
	if n != 10 || overflow == "" {
		t.Fatalf("%d series (want 10), overflow %q\n%s", n, overflow, rec)
	}
	if !strings.HasSuffix(overflow, " 991") {
		t.Fatalf("overflow series %q, want 991 (1000 - 9 kept)", overflow)
	}
}

func TestObserverOptionErrors(t *testing.T) {
	for _, o := range []Option{WithCardinalityLimit(1), WithServiceName(""), WithLogger(nil), WithAlertFunc(nil)} {
		if _, err := New(o); err == nil {
			t.Error("invalid option accepted")
		}
	}
	_ = slog.Default()
}
