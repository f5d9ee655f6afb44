package opcua

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

func connect(t testing.TB, c *Connector, up gateway.Uplink) {
	t.Helper()
	if err := c.Connect(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Disconnect(ctx); err != nil {
			t.Errorf("disconnect: %v", err)
		}
	})
}

// decoded decodes frames with Codec: topic -> message.
func decoded(t testing.TB, fs []gateway.Frame) map[string]*gateway.Message {
	t.Helper()
	out := map[string]*gateway.Message{}
	for i := range fs {
		m := &gateway.Message{Device: fs[i].Device, Topic: fs[i].Topic}
		if err := (Codec{}).Decode(&fs[i], m); err != nil {
			t.Fatalf("decode %s: %v", fs[i].Topic, err)
		}
		out[fs[i].Topic] = m
	}
	return out
}

var scalarWant = map[string]string{
	"Boolean": "true", "SByte": "-8", "Byte": "200", "Int16": "-1600", "UInt16": "60000", "Int32": "-320000",
	"UInt32": "4000000000", "Int64": "-6400000000", "UInt64": "18000000000000000000", "Float": "1.5",
	"Double": "2.25", "String": "hello", "DateTime": "2024-01-02T03:04:05.678Z", "ByteString": "\x00\x01\xfe\xff",
}

var scalarKind = map[string]gateway.Kind{
	"Boolean": gateway.KindBool, "SByte": gateway.KindInt, "Byte": gateway.KindUint, "Int16": gateway.KindInt,
	"UInt16": gateway.KindUint, "Int32": gateway.KindInt, "UInt32": gateway.KindUint, "Int64": gateway.KindInt,
	"UInt64": gateway.KindUint, "Float": gateway.KindFloat, "Double": gateway.KindFloat, "String": gateway.KindString,
	"DateTime": gateway.KindString, "ByteString": gateway.KindBytes,
}

// TestPeerPollAllTypes polls every built-in scalar type, an array and a
// node by browse path from node-opcua, and checks the decoded points,
// their kinds, timestamps and quality tags.
func TestPeerPollAllTypes(t *testing.T) {
	p := requirePeer(t)
	var nodes []Node
	for name := range scalarWant {
		nodes = append(nodes, Node{Name: name, ID: "ns=1;s=Demo." + name})
	}
	nodes = append(nodes, Node{Name: "Array", ID: "ns=1;s=Demo.Array"}, Node{Name: "ByPath", Path: "1:Demo/1:Double"},
		Node{Name: "Missing", Path: "1:Demo/1:NoSuchNode"})
	c, err := New(WithLogger(conntest.QuietLogger()), WithServer(Server{Name: "plc", Endpoint: p.endpoint(), Mode: Poll,
		Interval: 100 * time.Millisecond, Nodes: nodes}))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	fs := col.WaitFor(t, 15*time.Second, "a frame per node", func(fs []gateway.Frame) bool { return len(decodedTopics(fs)) >= len(scalarWant)+2 })
	got := decoded(t, fs)
	for name, want := range scalarWant {
		m := got[name]
		if m == nil {
			t.Errorf("%s: no frame", name)
			continue
		}
		pt, ok := m.Point(name)
		if !ok || pt.Value.String() != want || pt.Value.Kind() != scalarKind[name] {
			t.Errorf("%s: point %+v, want %s of kind %s", name, m.Points, want, scalarKind[name])
		}
		if q, _ := m.Tags.Get("quality"); q != "good" {
			t.Errorf("%s: quality %q", name, q)
		}
		if ty, _ := m.Tags.Get("type"); ty != name {
			t.Errorf("%s: type tag %q", name, ty)
		}
		if _, ok := m.Tags.Get("server_time"); !ok || m.Time.IsZero() {
			t.Errorf("%s: timestamps not kept: time %v tags %v", name, m.Time, m.Tags)
		}
	}
	if m := got["Array"]; m == nil || len(m.Points) != 3 || m.Points[0].Name != "Array[0]" || m.Points[2].Value.Int() != 3 {
		t.Errorf("array: %+v, want points Array[0..2] = 1, 2, 3", m)
	}
	if m := got["ByPath"]; m == nil || m.Points[0].Value.Float() != 2.25 {
		t.Errorf("browse path node: %+v", m)
	}
	if _, ok := got["Missing"]; ok {
		t.Error("a frame for a browse path that does not resolve")
	}
}

func decodedTopics(fs []gateway.Frame) map[string]bool {
	m := map[string]bool{}
	for _, f := range fs {
		m[f.Topic] = true
	}
	return m
}

// TestPeerPollingCoalesced polls the 1000 Bench nodes: with the server's
// MaxNodesPerRead of 500, two ReadRequests per cycle.
func TestPeerPollingCoalesced(t *testing.T) {
	p := requirePeer(t)
	var nodes []Node
	for i := range benchNodes {
		nodes = append(nodes, Node{Name: fmt.Sprintf("N%d", i), ID: fmt.Sprintf("ns=1;s=Bench.N%d", i)})
	}
	c, err := New(WithLogger(conntest.QuietLogger()), WithServer(Server{Name: "b", Endpoint: p.endpoint(), Mode: Poll,
		Interval: 200 * time.Millisecond, Nodes: nodes}))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	conntest.Eventually(t, 20*time.Second, "three poll cycles", func() bool { return c.Stats().Servers["b"].PollCycles >= 3 })
	st := c.Stats().Servers["b"]
	if perCycle := float64(st.ReadRequests) / float64(st.PollCycles); perCycle > 2.01 {
		t.Errorf("%d read requests in %d cycles: want 2 per cycle (1000 nodes, MaxNodesPerRead 500)", st.ReadRequests, st.PollCycles)
	}
	if n := len(decodedTopics(col.Frames())); n != benchNodes {
		t.Errorf("frames for %d nodes, want %d", n, benchNodes)
	}
}

// TestPeerSubscribeRestart subscribes to the changing counter, restarts
// the server mid-subscription and wants values flowing again within 5 s
// of the server being back, the subscription re-created, no value
// delivered twice and the gap counted.
func TestPeerSubscribeRestart(t *testing.T) {
	p := requirePeer(t)
	c, err := New(WithLogger(conntest.QuietLogger()), WithTimeout(2*time.Second), WithKeepAlive(time.Second),
		WithBackoff(50*time.Millisecond, 500*time.Millisecond),
		WithServer(Server{Name: "plc", Endpoint: p.endpoint(), Interval: 100 * time.Millisecond, SamplingInterval: 50 * time.Millisecond,
			Nodes: []Node{{Name: "counter", ID: "ns=1;s=Demo.Counter"}}}))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	col.WaitFor(t, 15*time.Second, "counter changes", func(fs []gateway.Frame) bool { return countTopic(fs, "counter") >= 5 })

	p.restart(t)
	back := time.Now()
	before := countTopic(col.Frames(), "counter")
	col.WaitFor(t, 10*time.Second, "counter changes after the restart", func(fs []gateway.Frame) bool { return countTopic(fs, "counter") >= before+3 })
	if d := time.Since(back); d > 5*time.Second {
		t.Errorf("values flowed again %v after the server was back, want within 5s", d)
	}
	st := c.Stats().Servers["plc"]
	if st.Resubscribes == 0 || st.Sessions < 2 {
		t.Errorf("session stats %+v: want the subscription re-created on a new session", st)
	}
	if st.Gaps == 0 {
		t.Errorf("gap not counted: %+v", st)
	}
	// No value was delivered twice: every counter frame has its own
	// value and source timestamp.
	seen := map[string]bool{}
	for _, f := range col.Frames() {
		if f.Topic != "counter" {
			continue
		}
		var smp Sample
		if err := DecodePayload(f.Payload, &smp); err != nil {
			t.Fatal(err)
		}
		k := smp.Values[0].String() + "@" + smp.Source.String()
		if seen[k] {
			t.Errorf("counter value %s delivered twice", k)
		}
		seen[k] = true
	}
}

func countTopic(fs []gateway.Frame, topic string) int {
	n := 0
	for _, f := range fs {
		if f.Topic == topic {
			n++
		}
	}
	return n
}

// TestPeerNetworkCut cuts the network between the connector and the
// server (nothing passes, no connection closes): the keepalive notices,
// the session is re-created once the network is back, values flow again;
// the unchanging node's value, sent again by the new subscription, is
// dropped as a duplicate.
func TestPeerNetworkCut(t *testing.T) {
	p := requirePeer(t)
	relay := startCutRelay(t, fmt.Sprintf("127.0.0.1:%d", p.port))
	c, err := New(WithLogger(conntest.QuietLogger()), WithTimeout(time.Second), WithKeepAlive(500*time.Millisecond),
		WithBackoff(50*time.Millisecond, 300*time.Millisecond),
		WithServer(Server{Name: "plc", Endpoint: relay.endpoint(), Interval: 100 * time.Millisecond,
			Nodes: []Node{{Name: "counter", ID: "ns=1;s=Demo.Counter"}, {Name: "still", ID: "ns=1;s=Demo.ReadOnly"}}}))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	col.WaitFor(t, 15*time.Second, "counter changes", func(fs []gateway.Frame) bool { return countTopic(fs, "counter") >= 3 })
	relay.cut.Store(true)
	conntest.Eventually(t, 10*time.Second, "the cut noticed", func() bool { return c.Stats().Total.Errors > 0 })
	relay.cut.Store(false)
	relay.closeAll()
	n := countTopic(col.Frames(), "counter")
	col.WaitFor(t, 15*time.Second, "counter changes after the cut", func(fs []gateway.Frame) bool { return countTopic(fs, "counter") >= n+3 })
	st := c.Stats().Servers["plc"]
	if st.Resubscribes == 0 || st.Gaps == 0 || st.Duplicates == 0 {
		t.Errorf("stats %+v: want a re-created subscription, a counted gap and a dropped duplicate", st)
	}
	if n := countTopic(col.Frames(), "still"); n != 1 {
		t.Errorf("unchanging node delivered %d times, want once", n)
	}
}

// TestPeerWriteThroughGateway writes through Gateway.Write with the opcua
// codec: conversions, and the server's refusals as clear errors.
func TestPeerWriteThroughGateway(t *testing.T) {
	p := requirePeer(t)
	nodes := []Node{{Name: "Writable", ID: "ns=1;s=Demo.Writable"}, {Name: "ReadOnly", ID: "ns=1;s=Demo.ReadOnly"},
		{Name: "Guarded", ID: "ns=1;s=Demo.Guarded"}, {Name: "Byte", ID: "ns=1;s=Demo.Byte"}, {Name: "Int16", ID: "ns=1;s=Demo.Int16"},
		{Name: "String", ID: "ns=1;s=Demo.String"}, {Name: "Boolean", ID: "ns=1;s=Demo.Boolean"}}
	c, err := New(WithLogger(conntest.QuietLogger()), WithServer(Server{Name: "plc", Endpoint: p.endpoint(), Username: "user", Password: "secret",
		Mode: Poll, Interval: 100 * time.Millisecond, Nodes: nodes}))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(gateway.WithConnector("ua", c), gateway.WithCodec("opcua", Codec{}),
		gateway.WithConnectorCodec("ua", "opcua"), gateway.WithSink("t", drainSink{}), gateway.WithLogger(conntest.QuietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	write := func(node string, v gateway.Value) error {
		return g.Write(context.Background(), "ua", &gateway.Message{Device: "plc", Topic: node, Points: []gateway.Point{{Name: node, Value: v}}})
	}
	conntest.Eventually(t, 15*time.Second, "session up: a first write", func() bool { return write("Writable", gateway.Int(41)) == nil })
	tests := []struct {
		node string
		v    gateway.Value
		err  error
	}{
		{"Writable", gateway.Int(42), nil},       // Int64 -> Double
		{"Writable", gateway.String("1.5"), nil}, // text -> Double
		{"Byte", gateway.Uint(17), nil},
		{"Byte", gateway.Int(300), ErrTypeMismatch}, // does not fit, refused locally
		{"Int16", gateway.Float(2.5), ErrTypeMismatch},
		{"Int16", gateway.Float(-2), nil},
		{"String", gateway.Int(5), nil},
		{"Boolean", gateway.String("maybe"), ErrTypeMismatch},
		{"ReadOnly", gateway.Float(1), ErrNotWritable},
		{"Guarded", gateway.Float(1), ErrAccessDenied},
		{"Nope", gateway.Float(1), ErrUnknownNode},
	}
	for _, tt := range tests {
		err := write(tt.node, tt.v)
		if tt.err == nil && err != nil || tt.err != nil && !errors.Is(err, tt.err) {
			t.Errorf("write %s = %v: err %v, want %v", tt.node, tt.v, err, tt.err)
		}
	}
	// The writes landed: read back through the poll.
	conntest.Eventually(t, 10*time.Second, "written values polled back", func() bool {
		v := readBack(c, "plc")
		return v["Writable"] == "1.5" && v["Byte"] == "17" && v["Int16"] == "-2" && v["String"] == "5"
	})
	if err := write("ReadOnly", gateway.Float(1)); err == nil || !strings.Contains(err.Error(), "BadNotWritable") {
		t.Errorf("error text %q does not name the status", err)
	}
}

type drainSink struct{}

func (drainSink) Publish(context.Context, []*gateway.Message) error { return nil }

// readBack reads the current values of a server's nodes directly.
func readBack(c *Connector, server string) map[string]string {
	r := c.servers[server]
	cl, ids := r.current()
	out := map[string]string{}
	if cl == nil {
		return out
	}
	for i, n := range r.srv.Nodes {
		if ids[i] == nil {
			continue
		}
		v, err := cl.Node(ids[i]).Value(context.Background())
		if err == nil && v != nil {
			out[n.Name] = fmt.Sprint(v.Value())
		}
	}
	return out
}

// TestPeerAuthAndSecurity: username over Basic256Sha256 (Sign and
// SignAndEncrypt) works with a trusted certificate pair; a wrong
// password, an untrusted server certificate and a client certificate the
// server does not trust fail with clear errors.
func TestPeerAuthAndSecurity(t *testing.T) {
	p := requirePeer(t)
	dir := t.TempDir()
	cert, key := filepath.Join(p.clientDir, "cert.der"), filepath.Join(p.clientDir, "key.pem")
	probe := func(s Server) error {
		s.Name, s.Endpoint = "plc", p.endpoint()
		s.Nodes = []Node{{ID: "i=2258"}}
		c, err := New(WithLogger(conntest.QuietLogger()), WithTimeout(5*time.Second), WithServer(s))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return c.Probe(ctx, "plc")
	}
	trusted := []string{p.serverCert()}
	// Generated on first use when missing.
	newCert, newKey := filepath.Join(dir, "gen", "cert.der"), filepath.Join(dir, "gen", "key.pem")
	other := filepath.Join(dir, "other.der")
	if err := generateCert(other, filepath.Join(dir, "other.pem")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		s    Server
		err  error
		text string
	}{
		{"anonymous none", Server{}, nil, ""},
		{"user none", Server{Username: "user", Password: "secret"}, nil, ""},
		{"wrong password", Server{Username: "user", Password: "wrong"}, ErrAuth, `user "user" (wrong user name or password?)`},
		{"sign", Server{SecurityPolicy: PolicyBasic256Sha256, SecurityMode: "Sign", CertFile: cert, KeyFile: key, TrustedCerts: trusted, Username: "user", Password: "secret"}, nil, ""},
		{"sign and encrypt", Server{SecurityPolicy: PolicyBasic256Sha256, CertFile: cert, KeyFile: key, TrustedCerts: trusted}, nil, ""},
		{"untrusted server", Server{SecurityPolicy: PolicyBasic256Sha256, CertFile: cert, KeyFile: key, TrustedCerts: []string{other}}, ErrUntrustedServer, "is not in trusted_certs"},
		{"untrusted client", Server{SecurityPolicy: PolicyBasic256Sha256, CertFile: newCert, KeyFile: newKey, TrustedCerts: trusted}, ErrCertRejected, newCert},
	}
	for _, tt := range tests {
		err := probe(tt.s)
		if tt.err == nil && err != nil || tt.err != nil && !errors.Is(err, tt.err) || err != nil && !strings.Contains(err.Error(), tt.text) {
			t.Errorf("%s: err = %v, want %v containing %q", tt.name, err, tt.err, tt.text)
		}
	}
	if _, err := os.Stat(newCert); err != nil {
		t.Errorf("client certificate not generated: %v", err)
	}
}

// TestPeerDeadband: with an absolute deadband of 5 on a counter that
// steps by 1, the server reports only changes larger than 5.
func TestPeerDeadband(t *testing.T) {
	p := requirePeer(t)
	c, err := New(WithLogger(conntest.QuietLogger()), WithServer(Server{Name: "plc", Endpoint: p.endpoint(),
		Interval: 100 * time.Millisecond, SamplingInterval: 50 * time.Millisecond, QueueSize: 1, Deadband: 5,
		Nodes: []Node{{Name: "counter", ID: "ns=1;s=Demo.Counter"}}}))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	fs := col.WaitFor(t, 15*time.Second, "four counter values", func(fs []gateway.Frame) bool { return countTopic(fs, "counter") >= 4 })
	var prev int64
	for i, f := range fs {
		var smp Sample
		if err := DecodePayload(f.Payload, &smp); err != nil {
			t.Fatal(err)
		}
		v := smp.Values[0].Int()
		if i > 0 && v-prev <= 5 {
			t.Errorf("values %d then %d: a change within the deadband was reported", prev, v)
		}
		prev = v
	}
}

// TestPeerSubscriptionDropped: the subscription disappears from the
// server while the session lives on (deleted here through the
// connector's own session, as a server that expired it would). Reads
// still work, so only the subscription check notices; the subscription
// is re-created and values flow again.
func TestPeerSubscriptionDropped(t *testing.T) {
	p := requirePeer(t)
	c, err := New(WithLogger(conntest.QuietLogger()), WithKeepAlive(300*time.Millisecond), WithBackoff(20*time.Millisecond, 200*time.Millisecond),
		WithServer(Server{Name: "plc", Endpoint: p.endpoint(), Interval: 100 * time.Millisecond,
			Nodes: []Node{{Name: "counter", ID: "ns=1;s=Demo.Counter"}}}))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	col.WaitFor(t, 15*time.Second, "counter changes", func(fs []gateway.Frame) bool { return countTopic(fs, "counter") >= 3 })
	cl, _ := c.servers["plc"].current()
	ids := cl.SubscriptionIDs()
	if len(ids) != 1 {
		t.Fatalf("subscriptions %v", ids)
	}
	if err := cl.Send(context.Background(), &ua.DeleteSubscriptionsRequest{SubscriptionIDs: ids}, func(ua.Response) error { return nil }); err != nil {
		t.Fatal(err)
	}
	n := countTopic(col.Frames(), "counter")
	col.WaitFor(t, 10*time.Second, "counter changes after the subscription was dropped", func(fs []gateway.Frame) bool { return countTopic(fs, "counter") >= n+5 })
	if st := c.Stats().Servers["plc"]; st.Resubscribes == 0 {
		t.Errorf("stats %+v: want the subscription re-created", st)
	}
}
