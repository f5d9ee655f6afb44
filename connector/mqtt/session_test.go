package mqtt

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/mqttwire"
	"github.com/mochi-mqtt/server/v2/packets"
)

// rawSession opens a TCP connection, sends CONNECT and returns the
// connection and the CONNACK's session-present flag and return code.
func rawSession(t *testing.T, addr string, o connectOpts) (net.Conn, bool, byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(o.packet()); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 {
		t.Fatalf("connack %x: %v", ack, err)
	}
	return c, ack[2]&1 == 1, ack[3]
}

// readPacket reads one packet and returns its first byte and body.
func readPacket(c net.Conn, wait time.Duration) (byte, []byte, error) {
	rd := mqttwire.NewReader(readDeadline{c}, 256, 0)
	rd.Idle = wait
	return rd.Next()
}

// readDeadline leaves the write deadline of a test's connection alone.
type readDeadline struct{ net.Conn }

func (c readDeadline) SetDeadline(t time.Time) error { return c.Conn.SetReadDeadline(t) }

// subscribe sends SUBSCRIBE and checks the SUBACK grants QoS 1.
func subscribe(t *testing.T, c net.Conn, filter string) {
	t.Helper()
	if _, err := c.Write(subscribePacket(7, filter, 1)); err != nil {
		t.Fatal(err)
	}
	first, body, err := readPacket(c, 5*time.Second)
	if err != nil || first != 0x90 || len(body) != 3 || body[2] != 1 {
		t.Fatalf("suback %x %x: %v", first, body, err)
	}
}

// expectCommand reads a PUBLISH and checks its topic and payload.
func expectCommand(t *testing.T, c net.Conn, topic, payload string) {
	t.Helper()
	first, body, err := readPacket(c, 5*time.Second)
	if err != nil {
		t.Fatalf("no command: %v", err)
	}
	pk := packets.Packet{ProtocolVersion: 4}
	if err := decodePublish(&pk, first, body); err != nil {
		t.Fatal(err)
	}
	if pk.TopicName != topic || string(pk.Payload) != payload {
		t.Fatalf("command %s %q, want %s %q", pk.TopicName, pk.Payload, topic, payload)
	}
}

func decodePublish(pk *packets.Packet, first byte, body []byte) error {
	if first>>4 != packets.Publish {
		return errors.New("not a PUBLISH")
	}
	if err := pk.FixedHeader.Decode(first); err != nil {
		return err
	}
	return pk.PublishDecode(body)
}

// TestListenerSessionTakeover: a second connection with the same client
// id ends the first; a persistent session keeps its subscription and
// receives downlink on the new connection; a clean one starts empty.
func TestListenerSessionTakeover(t *testing.T) {
	l, h, p := startListener(t, conntest.NewCollector(), devices...)
	addr := net.JoinHostPort(h, p)
	o := connectOpts{clientID: "dev1-box", user: "dev1", pass: "pw1", persistent: true, keepalive: 60}
	first, present, rc := rawSession(t, addr, o)
	if present || rc != 0 {
		t.Fatalf("first session: present %v rc %d", present, rc)
	}
	subscribe(t, first, "devices/dev1/cmd/#")

	second, present, rc := rawSession(t, addr, o)
	if !present || rc != 0 {
		t.Fatalf("takeover: present %v rc %d, want a resumed session", present, rc)
	}
	// The first connection is closed (an MQTT 3.1.1 client gets no
	// DISCONNECT from a server, only the end of the stream).
	if _, _, err := readPacket(first, 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("first connection still open after takeover: %v", err)
	}
	conntest.Eventually(t, 5*time.Second, "one session", func() bool { return l.Sessions() == 1 })
	if err := l.Write(context.Background(), &gateway.Frame{Device: "dev1", Topic: "led", Payload: []byte("on")}); err != nil {
		t.Fatal(err)
	}
	expectCommand(t, second, "devices/dev1/cmd/led", "on")
	if got := l.Stats().Devices["dev1"].Reconnects; got != 1 {
		t.Errorf("reconnects %d, want 1", got)
	}

	// A clean takeover drops the subscription: the next command reaches
	// nobody until the device subscribes again.
	o.persistent = false
	third, present, _ := rawSession(t, addr, o)
	if present {
		t.Fatal("clean session reported as resumed")
	}
	_ = l.Write(context.Background(), &gateway.Frame{Device: "dev1", Topic: "led", Payload: []byte("off")})
	if first, body, err := readPacket(third, 300*time.Millisecond); err == nil {
		t.Fatalf("clean session got %x %q without subscribing", first, body)
	}
	subscribe(t, third, "devices/dev1/cmd/#")
	if err := l.Write(context.Background(), &gateway.Frame{Device: "dev1", Topic: "led", Payload: []byte("blink")}); err != nil {
		t.Fatal(err)
	}
	expectCommand(t, third, "devices/dev1/cmd/led", "blink")
}

// TestListenerWill: a device that drops its connection without DISCONNECT
// has its will published as a frame; one that says DISCONNECT does not;
// a will on a topic the device may not publish to is dropped.
func TestListenerWill(t *testing.T) {
	col := conntest.NewCollector()
	_, h, p := startListener(t, col, devices...)
	addr := net.JoinHostPort(h, p)

	gone, _, _ := rawSession(t, addr, connectOpts{clientID: "a", user: "dev1", pass: "pw1", keepalive: 60,
		willTopic: "devices/dev1/status", willMsg: "offline"})
	polite, _, _ := rawSession(t, addr, connectOpts{clientID: "b", user: "dev1", pass: "pw1", keepalive: 60,
		willTopic: "devices/dev1/status", willMsg: "polite"})
	foreign, _, _ := rawSession(t, addr, connectOpts{clientID: "c", user: "dev2", pass: "pw2", keepalive: 60,
		willTopic: "devices/dev1/status", willMsg: "forged"})
	if _, err := polite.Write([]byte{0xe0, 0}); err != nil { // DISCONNECT
		t.Fatal(err)
	}
	polite.Close()
	foreign.Close()
	gone.Close()
	col.WaitFor(t, 5*time.Second, "will frame", func(fs []gateway.Frame) bool { return len(fs) >= 1 })
	time.Sleep(200 * time.Millisecond) // let a wrong will show up too
	fs := col.Frames()
	if len(fs) != 1 || fs[0].Device != "dev1" || fs[0].Topic != "status" || string(fs[0].Payload) != "offline" {
		t.Fatalf("frames %+v, want only dev1's will", fs)
	}
}

// TestListenerTimeouts: a connection that never sends CONNECT and a
// session silent past 1.5 times its keepalive are both closed.
func TestListenerTimeouts(t *testing.T) {
	l, h, p := startListener(t, conntest.NewCollector(), append(devices, WithConnectTimeout(200*time.Millisecond))...)
	addr := net.JoinHostPort(h, p)
	mute, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	start := time.Now()
	if _, _, err := readPacket(mute, 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("connection without CONNECT not closed: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("closed after %v", d)
	}

	quiet, _, rc := rawSession(t, addr, connectOpts{clientID: "q", user: "dev1", pass: "pw1", keepalive: 1})
	if rc != 0 {
		t.Fatalf("rc %d", rc)
	}
	// A ping keeps it alive; then silence ends it.
	if _, err := quiet.Write([]byte{0xc0, 0}); err != nil {
		t.Fatal(err)
	}
	if first, _, err := readPacket(quiet, 5*time.Second); err != nil || first != 0xd0 {
		t.Fatalf("pingresp %x: %v", first, err)
	}
	start = time.Now()
	if _, _, err := readPacket(quiet, 10*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("silent session not closed: %v", err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("silent session closed after %v, before 1.5 x keepalive", d)
	}
	conntest.Eventually(t, 5*time.Second, "no sessions", func() bool { return l.Sessions() == 0 })
}

// TestListenerLargePackets: a PUBLISH many times the read buffer arrives
// intact; one over the packet limit ends the session before its body is
// read.
func TestListenerLargePackets(t *testing.T) {
	col := conntest.NewCollector()
	l, h, p := startListener(t, col, append(devices, WithSessionLimits(32, 256, 64<<10, time.Hour))...)
	addr := net.JoinHostPort(h, p)
	c, _, _ := rawSession(t, addr, connectOpts{clientID: "big", user: "dev1", pass: "pw1", keepalive: 60})
	payload := bytes.Repeat([]byte("0123456789abcdef"), 2048) // 32 KiB
	small := publishPacket("devices/dev1/s", []byte("x"))
	// Small, large and small again in one write: the reader must switch
	// between its buffer and reading straight into the body.
	msg := append(append(append([]byte{}, small...), publishPacket("devices/dev1/big", payload)...), small...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	col.WaitFor(t, 5*time.Second, "three frames", func(fs []gateway.Frame) bool { return len(fs) == 3 })
	fs := col.Frames()
	if !bytes.Equal(fs[1].Payload, payload) || string(fs[0].Payload) != "x" || string(fs[2].Payload) != "x" {
		t.Fatalf("frames out of order or damaged: %d %d %d bytes", len(fs[0].Payload), len(fs[1].Payload), len(fs[2].Payload))
	}
	huge := publishPacket("devices/dev1/huge", make([]byte, 70<<10))
	if _, err := c.Write(huge[:16]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readPacket(c, 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("session with an oversized packet still open: %v", err)
	}
	conntest.Eventually(t, 5*time.Second, "no sessions", func() bool { return l.Sessions() == 0 })
	if col.Len() != 3 {
		t.Fatalf("%d frames", col.Len())
	}
}

// TestListenerDecoderFault: an MQTT 5 SUBSCRIBE whose filter lacks its
// options byte makes the broker's decoder index past the packet. The
// session ends, counted as malformed; the gateway and other devices go on.
func TestListenerDecoderFault(t *testing.T) {
	col := conntest.NewCollector()
	l, h, p := startListener(t, col, devices...)
	addr := net.JoinHostPort(h, p)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// MQTT 5 CONNECT: clean start, username and password, no properties.
	var v []byte
	v = appendString(v, "MQTT")
	v = append(v, 5, 0xC2, 0, 60, 0)
	v = appendString(v, "v5dev")
	v = appendString(v, "dev2")
	v = appendString(v, "pw2")
	if _, err := c.Write(mqttwire.AppendPacket(nil, 0x10, v)); err != nil {
		t.Fatal(err)
	}
	if first, body, err := readPacket(c, 5*time.Second); err != nil || first != 0x20 || len(body) < 2 || body[1] != 0 {
		t.Fatalf("connack %x %x: %v", first, body, err)
	}
	// SUBSCRIBE id 1, no properties, filter "a" and no options byte.
	if _, err := c.Write([]byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 'a'}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := readPacket(c, 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("session still open after a faulty SUBSCRIBE: %v", err)
	}
	conntest.Eventually(t, 5*time.Second, "malformed counted", func() bool { return l.Stats().Devices["boiler-2"].Malformed == 1 })
	if out, err := mosq(t, "mosquitto_pub", "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-q", "1", "-t", "devices/dev1/ok", "-m", "fine"); err != nil {
		t.Fatalf("good device after the fault: %v %s", err, out)
	}
	col.WaitFor(t, 5*time.Second, "good frame", func(fs []gateway.Frame) bool { return len(fs) == 1 })
}
