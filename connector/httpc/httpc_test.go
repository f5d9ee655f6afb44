package httpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

func quiet() *slog.Logger { return conntest.QuietLogger() }

func start(t *testing.T, up gateway.Uplink, opts ...Option) (*Connector, string) {
	t.Helper()
	opts = append([]Option{WithAddress("127.0.0.1:0"), WithLogger(quiet())}, opts...)
	c, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Disconnect(ctx); err != nil {
			t.Errorf("disconnect: %v", err)
		}
	})
	if c.Addr() == nil {
		return c, ""
	}
	return c, "http://" + c.Addr().String()
}

// curl runs curl and returns the status code and body.
func curl(t *testing.T, args ...string) (int, string) {
	t.Helper()
	bin := testenv.RequireCommand(t, "curl")
	args = append([]string{"-sS", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10"}, args...)
	out, err := conntest.Run(20*time.Second, bin, args...)
	if err != nil {
		t.Fatalf("curl %v: %v\n%s", args, err, out)
	}
	s := strings.TrimRight(string(out), "\n")
	i := strings.LastIndexByte(s, '\n')
	code, err := strconv.Atoi(s[i+1:])
	if err != nil {
		t.Fatalf("curl output %q", out)
	}
	return code, s[:max(i, 0)]
}

func TestCurlIngest(t *testing.T) {
	col := conntest.NewCollector()
	c, base := start(t, col, WithMaxBody(16), WithRateLimit(0.01, 3), // one token per 100 s: no refill during the test
		WithDeviceToken("dev-1", "s3cret"), WithDeviceToken("dev-2", "other"))
	auth := "Authorization: Bearer s3cret"
	tests := []struct {
		name   string
		args   []string
		code   int
		reason string
	}{
		{"accepted", []string{"-H", auth, "--data-binary", `{"t":21.5}`, base + "/v1/devices/dev-1/env/temp"}, 202, "accepted"},
		{"put accepted", []string{"-X", "PUT", "-H", auth, "--data-binary", "xyz", base + "/v1/devices/dev-1/raw"}, 202, "accepted"},
		{"no token", []string{"--data-binary", "1", base + "/v1/devices/dev-1/x"}, 401, "bearer token"},
		{"wrong device for token", []string{"-H", auth, "--data-binary", "1", base + "/v1/devices/dev-2/x"}, 401, "bearer token"},
		{"too large", []string{"-H", auth, "--data-binary", strings.Repeat("a", 17), base + "/v1/devices/dev-1/x"}, 413, "exceeds the limit"},
		{"empty body", []string{"-H", auth, "-X", "POST", base + "/v1/devices/dev-1/x"}, 400, "empty body"},
		{"wildcard topic", []string{"-H", auth, "--data-binary", "1", base + "/v1/devices/dev-1/a/%2B"}, 400, "not allowed"},
		{"rate limited", []string{"-H", auth, "--data-binary", "1", base + "/v1/devices/dev-1/x"}, 429, "rate limit"},
		{"get not allowed", []string{base + "/v1/devices/dev-1/x"}, 405, ""},
	}
	for _, tt := range tests {
		code, body := curl(t, tt.args...)
		if code != tt.code || !strings.Contains(body, tt.reason) {
			t.Errorf("%s: got %d %q, want %d containing %q", tt.name, code, body, tt.code, tt.reason)
		}
	}
	got := col.Frames()
	if len(got) != 2 || got[0].Device != "dev-1" || got[0].Topic != "env/temp" || string(got[0].Payload) != `{"t":21.5}` ||
		got[1].Topic != "raw" || string(got[1].Payload) != "xyz" {
		t.Fatalf("frames = %+v", got)
	}
	st := c.Stats().Devices["dev-1"]
	if st.Frames != 2 || st.Errors < 5 {
		t.Errorf("dev-1 stats = %+v", st)
	}
}

// Test202OnlyAfterAccept: the reply waits for Deliver, and a refused frame
// gets no 202.
func Test202OnlyAfterAccept(t *testing.T) {
	col := conntest.NewCollector()
	release := col.Hold()
	_, base := start(t, col, WithDeliverTimeout(2*time.Second))
	type result struct {
		code int
		body string
	}
	done := make(chan result, 1)
	go func() {
		code, body := curl(t, "--data-binary", "x", base+"/v1/devices/d/t")
		done <- result{code, body}
	}()
	select {
	case r := <-done:
		t.Fatalf("answered %d before the frame was accepted", r.code)
	case <-time.After(300 * time.Millisecond):
	}
	release()
	if r := <-done; r.code != 202 {
		t.Fatalf("after accept: %d %q", r.code, r.body)
	}

	for _, tt := range []struct {
		err  error
		code int
		why  string
	}{
		{gateway.ErrDropped, 429, "queue full"},
		{gateway.ErrClosed, 503, "shutting down"},
		{errors.New("boom"), 503, "boom"},
	} {
		col.Refuse(tt.err)
		code, body := curl(t, "--data-binary", "x", base+"/v1/devices/d/t")
		if code != tt.code || !strings.Contains(body, tt.why) {
			t.Errorf("Deliver %v: got %d %q, want %d %q", tt.err, code, body, tt.code, tt.why)
		}
	}
}

// TestThroughGateway runs the connector inside a real gateway.
func TestThroughGateway(t *testing.T) {
	port := testenv.FreePort(t)
	c, err := New(WithAddress("127.0.0.1:"+strconv.Itoa(port)), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	sink := &collectSink{got: make(chan string, 10)}
	g, err := gateway.New(gateway.WithConnector("http", c), gateway.WithSink("t", sink), gateway.WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := curl(t, "--data-binary", "hello", base+"/v1/devices/gw-dev/up")
		if code == 202 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateway never accepted; last status %d", code)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case s := <-sink.got:
		if s != "gw-dev|up|hello" {
			t.Fatalf("sink got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing reached the sink")
	}
}

type collectSink struct{ got chan string }

func (s *collectSink) Publish(_ context.Context, msgs []*gateway.Message) error {
	for _, m := range msgs {
		p, _ := m.Point("raw")
		s.got <- m.Device + "|" + m.Topic + "|" + p.Value.Str()
	}
	return nil
}

// TestPollAndDownlink polls a device endpoint that goes away and comes
// back, and writes to it.
func TestPollAndDownlink(t *testing.T) {
	var mu sync.Mutex
	state, up := "v1", true
	var written []string
	dev := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodPost:
			b := make([]byte, 64)
			n, _ := r.Body.Read(b)
			written = append(written, r.URL.Path+"="+string(b[:n]))
			w.WriteHeader(204)
		case !up:
			http.Error(w, "down", 500)
		default:
			_, _ = w.Write([]byte(state))
		}
	}))
	defer dev.Close()
	col := conntest.NewCollector()
	c, _ := start(t, col, WithAddress(""), WithPoll(Poll{Device: "meter", URL: dev.URL + "/state", Topic: "state", Interval: 20 * time.Millisecond}),
		WithDeviceEndpoint("meter", dev.URL+"/cmd"))
	waitFor(t, func() bool { return len(col.Frames()) > 0 }, "first poll")
	mu.Lock()
	up = false
	mu.Unlock()
	waitFor(t, func() bool { return c.Stats().Devices["meter"].Errors > 0 }, "poll errors while down")
	mu.Lock()
	up, state = true, "v2"
	mu.Unlock()
	waitFor(t, func() bool {
		f := col.Frames()
		return string(f[len(f)-1].Payload) == "v2"
	}, "poll after recovery")
	if c.Stats().Devices["meter"].Reconnects == 0 {
		t.Error("recovery not counted")
	}
	if err := c.Write(context.Background(), &gateway.Frame{Device: "meter", Topic: "valve/open", Payload: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	w := strings.Join(written, ",")
	mu.Unlock()
	if w != "/cmd/valve/open=1" {
		t.Fatalf("device got %q", w)
	}
	if err := c.Write(context.Background(), &gateway.Frame{Device: "nope", Topic: "x", Payload: []byte("1")}); !errors.Is(err, gateway.ErrNoRoute) {
		t.Fatalf("write to unknown device: %v", err)
	}
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	conntest.Eventually(t, 10*time.Second, what, ok)
}

func TestRegisterStrictYAML(t *testing.T) {
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		yaml, wantErr string
	}{
		{"connectors:\n  - name: h\n    http: {address: '127.0.0.1:0', rate: 10, tokens: {a: b}}\n", ""},
		{"connectors:\n  - name: h\n    http: {adress: ':1'}\n", "connectors[0].http.adress: unknown key"},
		{"connectors:\n  - name: h\n    http: {max_body: -1}\n", "connectors[0].http.max_body: max body must be positive"},
		{"connectors:\n  - name: h\n    http: {address: '127.0.0.1:0', inflight_window: 8}\n", ""},
		{"connectors:\n  - name: h\n    http: {inflight_window: -1}\n", "connectors[0].http.inflight_window: in-flight window must be positive"},
		{"connectors:\n  - name: h\n    http: {polls: [{device: m, url: 'ftp://x'}]}\n", "connectors[0].http.polls"},
	}
	for _, tt := range tests {
		cfg, err := gateway.ParseConfig([]byte(tt.yaml), "t.yaml")
		if err == nil {
			_, err = gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg), gateway.WithLogger(quiet()))
		}
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%q: err = %v, want %q", tt.yaml, err, tt.wantErr)
		}
	}
}

// FuzzIngest throws arbitrary paths, headers and bodies at the handler:
// it answers with a status and never panics; only valid requests reach
// the uplink.
func FuzzIngest(f *testing.F) {
	f.Add("dev-1", "a/b", []byte("payload"), "Bearer t")
	f.Add("", "", []byte{}, "")
	f.Add("d", "a//b", []byte{0xff}, "Bearer")
	f.Add("d#", "+", []byte("x"), "x")
	f.Fuzz(func(t *testing.T, id, topic string, body []byte, auth string) {
		c, err := New(WithMaxBody(64), WithRateLimit(0, 0), WithDeviceToken("dev-1", "t"), WithLogger(quiet()))
		if err != nil {
			t.Fatal(err)
		}
		col := conntest.NewCollector()
		req := httptest.NewRequest(http.MethodPost, "/v1/devices/x/y", strings.NewReader(string(body)))
		req.SetPathValue("id", id)
		req.SetPathValue("topic", topic)
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		(&ingest{c: c, up: col}).ServeHTTP(rec, req)
		accepted := rec.Code == http.StatusAccepted
		if accepted != (len(col.Frames()) == 1) {
			t.Fatalf("status %d but %d frames delivered", rec.Code, len(col.Frames()))
		}
		if accepted && (ValidateDeviceID(id) != nil || ValidateTopic(topic) != nil || len(body) == 0 || len(body) > 64 || id != "dev-1") {
			t.Fatalf("accepted invalid request id=%q topic=%q body=%d", id, topic, len(body))
		}
	})
}

// TestDisconnectDuringRequests: Disconnect returns with requests in
// flight and later requests are refused at the socket.
func TestDisconnectDuringRequests(t *testing.T) {
	col := conntest.NewCollector()
	c, err := New(WithAddress("127.0.0.1:0"), WithLogger(quiet()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(context.Background(), col); err != nil {
		t.Fatal(err)
	}
	addr := c.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatal("still listening after Disconnect")
	}
}
