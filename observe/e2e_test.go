package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/connector/httpc"
	"github.com/iotgw/gateway/connector/mqtt"
	"github.com/iotgw/gateway/internal/testenv"
	"github.com/iotgw/gateway/resume"
	"github.com/iotgw/gateway/upstream/localbroker"
	upmqtt "github.com/iotgw/gateway/upstream/mqtt"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// syncBuf is a log destination tests read while the gateway writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuf) lines() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(s.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// upstream is an MQTT broker the gateway's MQTT sink publishes to; it
// keeps every envelope.
type upstream struct {
	b  *localbroker.Broker
	mu sync.Mutex
	in []string
}

func startUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{b: localbroker.New(localbroker.Config{Address: "127.0.0.1:0", TopicPrefix: "up"})}
	if err := u.b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = u.b.Close() })
	if err := u.b.Subscribe("#", 1, func(_ string, p []byte) {
		u.mu.Lock()
		u.in = append(u.in, string(p))
		u.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	return u
}

// envelope returns the upstream envelope whose traceparent has traceID.
func (u *upstream) envelope(traceID string) map[string]any {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, p := range u.in {
		var m map[string]any
		if json.Unmarshal([]byte(p), &m) != nil {
			continue
		}
		if tp, _ := m["traceparent"].(string); strings.Contains(tp, "-"+traceID+"-") {
			return m
		}
	}
	return nil
}

func (u *upstream) sink(t *testing.T, clientID string) *upmqtt.Sink {
	s, err := upmqtt.New("up", upmqtt.Config{Broker: "tcp://" + u.b.Addr(), ClientID: clientID, Topic: "gw/{device}/{topic}"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// checkLogs: every log line about device carries one of the trace ids of
// its messages; it returns how many lines each trace id has.
func checkLogs(t *testing.T, logs *syncBuf, device string, traceIDs ...string) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, l := range logs.lines() {
		if l["device"] != device {
			continue
		}
		id, _ := l["trace_id"].(string)
		if !slices.Contains(traceIDs, id) || l["span_id"] == nil || l["connector"] == nil {
			t.Errorf("log line about %s without the trace context of its message (one of %v): %v", device, traceIDs, l)
		}
		n[id]++
	}
	return n
}

// numCodec accepts decimal numbers only.
var numCodec = gateway.CodecFuncs{DecodeFunc: func(f *gateway.Frame, m *gateway.Message) error {
	v, err := strconv.ParseFloat(string(f.Payload), 64)
	if err != nil {
		return err
	}
	m.AddPoint("v", gateway.Float(v), "")
	return nil
}}

// TestEndToEndTraceMQTT5AndHTTP is the acceptance test: a trace started on
// an MQTT 5 device (mosquitto_pub with a traceparent user property) and on
// an HTTP device (curl with a traceparent header) is found in a real
// OpenTelemetry Collector with its receive, decode, route and publish
// spans, and its trace id is in the upstream envelope and in every log line
// about the message. Head sampling is 0 %: the devices' sampled flag
// decides.
func TestEndToEndTraceMQTT5AndHTTP(t *testing.T) {
	pub := testenv.RequireCommand(t, "mosquitto_pub")
	curl := testenv.RequireCommand(t, "curl")
	col := startCollector(t)
	up := startUpstream(t)
	logs := &syncBuf{}
	tr, err := NewTracing(context.Background(), WithOTLPEndpoint(col.url),
		WithExportInterval(50*time.Millisecond, 5*time.Second), WithSampling(gateway.TraceSampling{Ratio: 0, Tail: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	lst, err := mqtt.NewListener(mqtt.WithListenAddress("127.0.0.1:0"),
		mqtt.WithDeviceAuth(mqtt.DeviceAuth{Username: "dev1", Password: "pw1"}))
	if err != nil {
		t.Fatal(err)
	}
	hc, err := httpc.New(httpc.WithAddress("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	opts := []gateway.Option{
		gateway.WithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		gateway.WithConnector("mqtt", lst), gateway.WithConnector("http", hc),
		gateway.WithSink("up", up.sink(t, "gw-e2e")), gateway.WithCodec("num", numCodec),
	}
	g, err := gateway.New(append(opts, tr.Options()...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "connectors up", 10*time.Second, func() bool { return lst.Addr() != nil && hc.Addr() != nil })

	const mqttTrace, httpTrace = "0af7651916cd43dd8448eb211c80319c", "4bf92f3577b34da6a3ce929d0e0e4736"
	host, port, _ := net.SplitHostPort(lst.Addr().String())
	if out, err := exec.Command(pub, "-h", host, "-p", port, "-u", "dev1", "-P", "pw1", "-V", "mqttv5", "-q", "1",
		"-D", "publish", "user-property", "traceparent", "00-"+mqttTrace+"-b7ad6b7169203331-01",
		"-t", "devices/dev1/env", "-m", "21.5").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	if out, err := exec.Command(curl, "-sS", "--max-time", "10", "-H", "traceparent: 00-"+httpTrace+"-00f067aa0ba902b7-01",
		"--data-binary", "22.5", "http://"+hc.Addr().String()+"/v1/devices/dev-h/env").CombinedOutput(); err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	// A payload the codec refuses: a log line about each message.
	const mqttBad, httpBad = "1af7651916cd43dd8448eb211c80319c", "2bf92f3577b34da6a3ce929d0e0e4736"
	_ = exec.Command(pub, "-h", host, "-p", port, "-u", "dev1", "-P", "pw1", "-V", "mqttv5", "-q", "1",
		"-D", "publish", "user-property", "traceparent", "00-"+mqttBad+"-b7ad6b7169203331-01",
		"-t", "devices/dev1/env", "-m", "not a number").Run() // PUBACK 0x99
	if out, err := exec.Command(curl, "-sS", "--max-time", "10", "-H", "traceparent: 00-"+httpBad+"-00f067aa0ba902b7-01",
		"--data-binary", "not a number", "http://"+hc.Addr().String()+"/v1/devices/dev-h/env").CombinedOutput(); err != nil {
		t.Fatalf("curl: %v %s", err, out)
	}
	for _, c := range []struct{ trace, bad, parent, device string }{
		{mqttTrace, mqttBad, "b7ad6b7169203331", "dev1"}, {httpTrace, httpBad, "00f067aa0ba902b7", "dev-h"},
	} {
		var env map[string]any
		waitFor(t, "envelope of "+c.device, 10*time.Second, func() bool { env = up.envelope(c.trace); return env != nil })
		if env["device"] != c.device {
			t.Fatalf("envelope %v", env)
		}
		spans := col.waitSpans(t, c.trace, "receive", "decode", "route", "publish")
		recvID := strings.Split(env["traceparent"].(string), "-")[2]
		for _, s := range spans {
			switch {
			case s.Name == "receive" && (s.SpanID != recvID || s.ParentSpanID != c.parent):
				t.Fatalf("receive span %+v: want id %s (the envelope's) and the device's span %s as parent", s, recvID, c.parent)
			case s.Name != "receive" && s.ParentSpanID != recvID:
				t.Fatalf("span %+v is not a child of receive %s", s, recvID)
			}
		}
		waitFor(t, "log line about the refused message of "+c.device, 5*time.Second, func() bool {
			return checkLogs(t, logs, c.device, c.trace, c.bad)[c.bad] > 0
		})
		t.Logf("%s: log lines by trace id: %v", c.device, checkLogs(t, logs, c.device, c.trace, c.bad))
	}
}

// TestGatewayChildEdge is the gateway process TestEndToEndTraceKill9
// starts and kills: edge mode, a SQLite store, an HTTP connector and a sink
// that never acknowledges, so accepted frames stay in the store. It does
// nothing unless started by that test.
func TestGatewayChildEdge(t *testing.T) {
	db := os.Getenv("OBSERVE_CHILD_DB")
	if db == "" {
		return
	}
	st, err := openStore(db)
	if err != nil {
		os.Exit(2)
	}
	hc, err := httpc.New(httpc.WithAddress("127.0.0.1:0"))
	if err != nil {
		os.Exit(2)
	}
	g, err := gateway.New(gateway.WithLogger(slog.New(slog.DiscardHandler)), gateway.WithMode(gateway.ModeEdge),
		gateway.WithStore(st), gateway.WithConnector("http", hc), gateway.WithSink("up", stuckSink{}),
		gateway.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithIDGenerator(IDGenerator()))),
		gateway.WithTraceSampling(gateway.TraceSampling{Ratio: 0, Tail: true}))
	if err != nil {
		os.Exit(2)
	}
	go func() {
		for hc.Addr() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		os.Stdout.WriteString("READY " + hc.Addr().String() + "\n")
	}()
	_ = g.Run(context.Background())
}

type stuckSink struct{}

func (stuckSink) Publish(ctx context.Context, _ []*gateway.Message) error {
	<-ctx.Done()
	return ctx.Err()
}

func openStore(path string) (*resume.SQLiteStore, error) {
	return resume.OpenSQLiteStore(resume.SQLiteConfig{Path: path, MinFreeBytes: -1, Logger: slog.New(slog.DiscardHandler)})
}

// TestEndToEndTraceKill9: an edge-mode gateway accepts a frame with a
// traceparent (committed to its store), is killed with SIGKILL before it
// can publish, and the gateway started on the same store replays it: the
// collector has the original trace's receive (marked replayed), decode,
// route and publish spans, and the upstream envelope its trace id.
func TestEndToEndTraceKill9(t *testing.T) {
	curl := testenv.RequireCommand(t, "curl")
	col := startCollector(t)
	db := filepath.Join(t.TempDir(), "edge.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestGatewayChildEdge$", "-test.count=1")
	cmd.Env = append(os.Environ(), "OBSERVE_CHILD_DB="+db)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	t.Cleanup(func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	ready := make(chan string, 1)
	go func() {
		buf := make([]byte, 256)
		var line []byte
		for {
			n, err := out.Read(buf)
			line = append(line, buf[:n]...)
			if i := bytes.IndexByte(line, '\n'); i >= 0 && bytes.HasPrefix(line, []byte("READY ")) {
				ready <- string(line[6:i])
				return
			}
			if err != nil {
				close(ready)
				return
			}
		}
	}()
	var addr string
	select {
	case addr = <-ready:
	case <-time.After(30 * time.Second):
		t.Fatal("child gateway did not start")
	}
	if addr == "" {
		t.Fatal("child gateway exited")
	}
	const traceID = "5b8aa5a2d2c872e8321cf37308d69df2"
	if b, err := exec.Command(curl, "-sS", "--max-time", "10", "-w", "%{http_code}", "-H", "traceparent: 00-"+traceID+"-051581bf3cb55c13-01",
		"--data-binary", "23.5", "http://"+addr+"/v1/devices/dev-k/env").CombinedOutput(); err != nil || !strings.HasSuffix(string(b), "202") {
		t.Fatalf("curl: %v %s", err, b)
	}
	_ = cmd.Process.Kill() // kill -9 after the 202: the frame is only in the store
	_ = cmd.Wait()
	killed = true

	st, err := openStore(db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	up := startUpstream(t)
	logs := &syncBuf{}
	tr, err := NewTracing(context.Background(), WithOTLPEndpoint(col.url),
		WithExportInterval(50*time.Millisecond, 5*time.Second), WithSampling(gateway.TraceSampling{Ratio: 0, Tail: true}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	opts := []gateway.Option{
		gateway.WithLogger(slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st), gateway.WithSink("up", up.sink(t, "gw-kill9")),
	}
	g, err := gateway.New(append(opts, tr.Options()...)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = g.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	var env map[string]any
	waitFor(t, "replayed envelope", 20*time.Second, func() bool { env = up.envelope(traceID); return env != nil })
	if env["device"] != "dev-k" {
		t.Fatalf("envelope %v", env)
	}
	recvID := strings.Split(env["traceparent"].(string), "-")[2]
	for _, s := range col.waitSpans(t, traceID, "receive", "decode", "route", "publish") {
		if s.Name == "receive" && (s.SpanID != recvID || s.ParentSpanID != "051581bf3cb55c13") {
			t.Fatalf("receive span %+v, want id %s parent 051581bf3cb55c13", s, recvID)
		}
	}
	checkLogs(t, logs, "dev-k", traceID)
}
