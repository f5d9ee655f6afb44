package opcua

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"
	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

// startGoServer runs gopcua's own server on 127.0.0.1:port with a
// namespace holding an Int32 "good" = 5 and a NodeId-typed "odd" (a type
// with no gateway value). It returns the namespace index.
func startGoServer(t *testing.T, port int) (*server.Server, uint16) {
	t.Helper()
	s := server.New(server.EnableSecurity("None", ua.MessageSecurityModeNone), server.EnableAuthMode(ua.UserTokenTypeAnonymous),
		server.EndPoint("127.0.0.1", port), server.SetLogger(quietServerLog{}))
	ns := server.NewNodeNameSpace(s, "fault")
	ns.AddNewVariableStringNode("good", int32(5))
	ns.AddNewVariableStringNode("odd", ua.NewNumericNodeID(0, 85))
	// The server lives as long as Start's context: Close stops it.
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("gopcua server: %v", err)
	}
	return s, ns.ID()
}

// TestGoServerFaults polls gopcua's server: a node of an unmapped type is
// counted as malformed and a node the server does not know arrives with
// quality bad, while the good node flows; the server goes away and comes
// back on the same port, and polling resumes on a new session.
func TestGoServerFaults(t *testing.T) {
	port := testenv.FreePort(t)
	s, ns := startGoServer(t, port)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = s.Close()
		}
	})
	id := func(name string) string { return fmt.Sprintf("ns=%d;s=%s", ns, name) }
	c, err := New(WithLogger(conntest.QuietLogger()), WithTimeout(2*time.Second), WithKeepAlive(300*time.Millisecond),
		WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		WithServer(Server{Name: "g", Endpoint: fmt.Sprintf("opc.tcp://127.0.0.1:%d", port), Mode: Poll, Interval: 50 * time.Millisecond,
			Nodes: []Node{{Name: "good", ID: id("good")}, {Name: "odd", ID: id("odd")}, {Name: "gone", ID: id("gone")}}}))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	fs := col.WaitFor(t, 10*time.Second, "good and gone frames", func(fs []gateway.Frame) bool {
		tp := decodedTopics(fs)
		return tp["good"] && tp["gone"]
	})
	got := decoded(t, fs)
	if m := got["good"]; m.Points[0].Value.Int() != 5 {
		t.Errorf("good = %+v", m.Points)
	}
	if m := got["gone"]; len(m.Points) != 0 || m.Tags.Set("x", "")[0].Value != "bad" {
		t.Errorf("unknown node: points %+v tags %v, want no point and quality bad", m.Points, m.Tags)
	} else if st, _ := m.Tags.Get("status"); st != fmt.Sprintf("0x%08X", uint32(ua.StatusBadNodeIDUnknown)) {
		t.Errorf("unknown node status tag %q", st)
	}
	if _, ok := got["odd"]; ok {
		t.Error("a frame for a value with no gateway mapping")
	}
	conntest.Eventually(t, 5*time.Second, "unmapped value counted", func() bool { return c.Stats().Total.Malformed > 0 })

	_ = s.Close()
	closed = true
	conntest.Eventually(t, 10*time.Second, "the loss noticed", func() bool { return c.Stats().Total.Errors > 0 })
	s2, _ := startGoServer(t, port)
	t.Cleanup(func() { _ = s2.Close() })
	n := countTopic(col.Frames(), "good")
	col.WaitFor(t, 10*time.Second, "polling after the server came back", func(fs []gateway.Frame) bool { return countTopic(fs, "good") > n+2 })
	if st := c.Stats(); st.Total.Reconnects == 0 || st.Servers["g"].Sessions < 2 {
		t.Errorf("stats %+v: want a new session counted as a reconnect", st)
	}
}

type quietServerLog struct{}

func (quietServerLog) Debug(string, ...any) {}
func (quietServerLog) Info(string, ...any)  {}
func (quietServerLog) Warn(string, ...any)  {}
func (quietServerLog) Error(string, ...any) {}
