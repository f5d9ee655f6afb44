package mqtt

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
	"github.com/mochi-mqtt/server/v2/packets"
)

// lineReader collects the output lines of a process.
type lineReader struct {
	mu    sync.Mutex
	lines []string
}

func (r *lineReader) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}

// startSub runs mosquitto_sub until the test ends.
func startSub(t *testing.T, args ...string) *lineReader {
	t.Helper()
	cmd := exec.Command(testenv.RequireCommand(t, "mosquitto_sub"), args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &lineReader{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			r.mu.Lock()
			r.lines = append(r.lines, sc.Text())
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		_ = cmd.Wait()
	})
	return r
}

// sendCommand writes a command to dev1 until mosquitto_sub prints it (it
// may not have subscribed yet the first time).
func sendCommand(t *testing.T, l *Listener, sub *lineReader, topic, payload string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := l.Write(context.Background(), &gateway.Frame{Device: "dev1", Topic: topic, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
		for wait := time.Now().Add(200 * time.Millisecond); time.Now().Before(wait); time.Sleep(10 * time.Millisecond) {
			if sub.has("devices/dev1/cmd/" + topic + " " + payload) {
				return
			}
		}
	}
	t.Fatalf("command %s never reached mosquitto_sub", topic)
}

// TestListenerReloadKeepsSessions runs the listener from YAML in a
// gateway and reloads its configuration while devices are connected
// (mosquitto_sub and raw MQTT 3.1.1 and 5 sessions): adding a device
// keeps every session; removing one disconnects only that device; a
// narrower ACL applies to the next PUBLISH; a new address restarts the
// listener.
func TestListenerReloadKeepsSessions(t *testing.T) {
	testenv.RequireCommand(t, "mosquitto_sub", "mosquitto_pub")
	port := strconv.Itoa(testenv.FreePort(t))
	addr := net.JoinHostPort("127.0.0.1", port)
	var mu sync.Mutex
	var built []*Listener
	reg := gateway.NewRegistry()
	if err := reg.AddConnector("mqtt", func(_ string, spec gateway.Section) (gateway.DeviceConnector, error) {
		var cfg Config
		if err := spec.Decode(&cfg); err != nil {
			return nil, err
		}
		c, err := cfg.listener(spec)
		if err == nil {
			mu.Lock()
			built = append(built, c.(*Listener))
			mu.Unlock()
		}
		return c, err
	}); err != nil {
		t.Fatal(err)
	}
	config := func(address, devices string) *gateway.Config {
		t.Helper()
		cfg, err := gateway.ParseConfig([]byte(fmt.Sprintf(`
connectors:
  - name: field
    mqtt:
      address: %s
      devices:
%s
`, address, devices)), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	const (
		dev1 = "        - {username: dev1, password: pw1}\n"
		dev2 = "        - {username: dev2, password: pw2}\n"
		dev3 = "        - {username: dev3, password: pw3}\n"
		// dev1 with a narrower publish ACL
		dev1narrow = "        - {username: dev1, password: pw1, publish: [\"devices/{device}/allowed/#\"]}\n"
	)
	sink := make(chanSink, 16)
	g, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(config(addr, dev1+dev2)), gateway.WithSink("t", sink),
		gateway.WithLogger(conntest.QuietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	conntest.WaitTCP(t, addr)
	mu.Lock()
	l := built[0]
	mu.Unlock()
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-sink:
			if got != want {
				t.Fatalf("sink got %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q did not reach the sink", want)
		}
	}

	sub := startSub(t, "-h", "127.0.0.1", "-p", port, "-u", "dev1", "-P", "pw1", "-i", "dev1-sub", "-q", "1",
		"-t", "devices/dev1/cmd/#", "-v")
	raw1, _, rc := rawSession(t, addr, connectOpts{clientID: "dev1-raw", user: "dev1", pass: "pw1", keepalive: 60})
	if rc != 0 {
		t.Fatalf("dev1 connack %d", rc)
	}
	raw2, ack := sessionV5(t, addr, connectV5("dev2-raw", "dev2", "pw2"))
	if ack.ReasonCode != 0 {
		t.Fatalf("dev2 connack %#x", ack.ReasonCode)
	}
	conntest.Eventually(t, 5*time.Second, "three sessions", func() bool { return l.Sessions() == 3 })
	reconnects := l.Stats().Total.Reconnects

	// Add a device: nobody is dropped, and the new device can log in.
	if err := g.ApplyConfig(ctx, config(addr, dev1+dev2+dev3)); err != nil {
		t.Fatal(err)
	}
	if out, err := mosq(t, "mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-u", "dev3", "-P", "pw3", "-q", "1",
		"-t", "devices/dev3/t", "-m", "3"); err != nil {
		t.Fatalf("new device: %v %s", err, out)
	}
	expect("field|dev3|t|3")
	// dev3's session ends on its own; the three others stay.
	conntest.Eventually(t, 5*time.Second, "three sessions", func() bool { return l.Sessions() == 3 })
	if l.Stats().Total.Reconnects != reconnects {
		t.Fatalf("after adding a device: reconnects %d -> %d", reconnects, l.Stats().Total.Reconnects)
	}
	if _, err := raw1.Write(publishPacket("devices/dev1/temp", []byte("21"))); err != nil {
		t.Fatal(err)
	}
	expect("field|dev1|temp|21")
	sendCommand(t, l, sub, "reboot", "now")

	// Remove dev2 and narrow dev1's publish ACL: dev2 is disconnected
	// with "not authorized"; dev1 stays, under its new ACL.
	if err := g.ApplyConfig(ctx, config(addr, dev1narrow+dev3)); err != nil {
		t.Fatal(err)
	}
	if d := readV5(t, raw2); d.FixedHeader.Type != packets.Disconnect || d.ReasonCode != packets.ErrNotAuthorized.Code {
		t.Fatalf("removed device: type %d reason %#x, want DISCONNECT 0x87", d.FixedHeader.Type, d.ReasonCode)
	}
	conntest.Eventually(t, 5*time.Second, "dev2 gone", func() bool { return l.Sessions() == 2 })
	if _, err := raw1.Write(append(publishPacket("devices/dev1/temp", []byte("denied")),
		publishPacket("devices/dev1/allowed/t", []byte("ok"))...)); err != nil {
		t.Fatal(err)
	}
	expect("field|dev1|allowed/t|ok")
	sendCommand(t, l, sub, "again", "1")
	if l.Stats().Total.Reconnects != reconnects {
		t.Fatalf("a device reconnected: %d -> %d", reconnects, l.Stats().Total.Reconnects)
	}

	// A new address needs a new listener: the old one stops.
	addr2 := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	if err := g.ApplyConfig(ctx, config(addr2, dev1narrow+dev3)); err != nil {
		t.Fatal(err)
	}
	conntest.Eventually(t, 5*time.Second, "old listener stopped", func() bool { return l.Addr() == nil && l.Sessions() == 0 })
	conntest.WaitTCP(t, addr2)
}

// TestReconfigureDecisions: what Reconfigure takes in place and what
// needs a restart.
func TestReconfigureDecisions(t *testing.T) {
	build := func(opts ...ListenerOption) *Listener {
		t.Helper()
		l, err := NewListener(append([]ListenerOption{WithAnonymous(true)}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := build(WithListenAddress("127.0.0.1:1884"))
	if !l.Reconfigure(build(WithListenAddress("127.0.0.1:1884"), WithMaxSessions(5), WithDeliverTimeout(time.Second),
		WithDeviceAuth(DeviceAuth{Username: "a", Password: "b"}), WithCommandTopic("c/{device}/{topic}", 0))) {
		t.Fatal("credentials and limits were not taken in place")
	}
	cur := l.live.Load()
	if cur.maxSessions != 5 || cur.deliverTimeout != time.Second || cur.users["a"].Password != "b" || cur.commandTopic != "c/{device}/{topic}" {
		t.Fatalf("settings not swapped: %+v", cur)
	}
	if l.Reconfigure(build(WithListenAddress("127.0.0.1:1885"))) {
		t.Fatal("a new address was taken in place")
	}
	if l.Reconfigure(build(WithListenAddress("127.0.0.1:1884"), WithSessionLimits(32, 512, 256<<10, time.Hour))) {
		t.Fatal("new session buffers were taken in place")
	}
	if l.Reconfigure(nil) || l.Reconfigure(l) {
		t.Fatal("took a nil or itself")
	}
}

// TestReconfigureTLSFromYAML: the same tls: block read again (new
// tls.Config values, same files) is the same identity, so credential
// changes still apply in place; another client CA is not.
func TestReconfigureTLSFromYAML(t *testing.T) {
	p := newPKI(t)
	cert := p.write(t, "server.pem", "CERTIFICATE", p.server.Certificate[0])
	key := p.writeKey(t, "server.key", p.server.PrivateKey.(*ecdsa.PrivateKey))
	build := func(clientCA, devices string) *Listener {
		t.Helper()
		reg := gateway.NewRegistry()
		var got *Listener
		if err := reg.AddConnector("mqtt", func(_ string, spec gateway.Section) (gateway.DeviceConnector, error) {
			var cfg Config
			if err := spec.Decode(&cfg); err != nil {
				return nil, err
			}
			c, err := cfg.listener(spec)
			if err == nil {
				got = c.(*Listener)
			}
			return c, err
		}); err != nil {
			t.Fatal(err)
		}
		cfg, err := gateway.ParseConfig([]byte(fmt.Sprintf(`
connectors:
  - name: m
    mqtt:
      address: 127.0.0.1:8883
      tls: {cert: %q, key: %q, client_ca: %q}
      devices: [%s]
`, cert, key, clientCA, devices)), "t.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg)); err != nil {
			t.Fatal(err)
		}
		return got
	}
	l := build(p.caFile, "{username: a, password: b}")
	if !l.Reconfigure(build(p.caFile, "{username: a, password: b}, {username: c, password: d}")) {
		t.Fatal("unchanged tls block: credentials not taken in place")
	}
	if l.Reconfigure(build(p.rogueCert, "{username: a, password: b}")) {
		t.Fatal("another client CA was taken in place")
	}
}
