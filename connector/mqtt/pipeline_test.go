package mqtt

import (
	"context"
	"fmt"
	"github.com/iotgw/gateway/internal/mqttwire"
	"github.com/iotgw/gateway/internal/testenv"
	"github.com/mochi-mqtt/server/v2/packets"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

// pubLines publishes one QoS 1 message per line with a single
// mosquitto_pub, which keeps up to 20 in flight.
func pubLines(t *testing.T, port int, topic string, lines []string) {
	t.Helper()
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-q", "1", "-t", topic, "-l"}
	if out, err := mosqStdin(t, strings.Join(lines, "\n")+"\n", "mosquitto_pub", args...); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
}

// TestClientPipelinesDeliveries: while the gateway has not accepted the
// first message, the client goes on reading and hands over the next ones
// (its window), which are then delivered together, in order, and each is
// acknowledged: none comes back after a reconnect.
func TestClientPipelinesDeliveries(t *testing.T) {
	b := startBroker(t)
	up := conntest.NewBatchCollector()
	release := up.Hold()
	defer release()
	c := startClient(t, up, WithBroker("tcp://"+b.addr()), WithSession("gw-pipe", false), WithTopics(1, "sensors/{device}/#"))
	var lines []string
	for i := range 10 {
		lines = append(lines, fmt.Sprint(i))
	}
	pubLines(t, b.port, "sensors/a/x", lines)
	conntest.Eventually(t, 10*time.Second, "all ten handed over while the first waits", func() bool {
		c.mu.Lock()
		p := c.pipe
		c.mu.Unlock()
		return p != nil && p.InFlight() == 10
	})
	release()
	fs := up.WaitFor(t, 5*time.Second, "ten frames", func(fs []gateway.Frame) bool { return len(fs) == 10 })
	for i, f := range fs {
		if string(f.Payload) != lines[i] {
			t.Fatalf("frame %d is %q: out of order", i, f.Payload)
		}
	}
	// The first batch was held; all the others were queued by then and
	// go in the next one.
	if bs := up.Batches(); len(bs) > 2 {
		t.Fatalf("batches %v: the messages read while the first batch waited were not delivered together", bs)
	}
	// Every message was acknowledged: a new session of the same client id
	// gets nothing again.
	conntest.Eventually(t, 5*time.Second, "completions", func() bool { return c.Stats().Total.Frames == 10 })
	ctxDisconnect(t, c)
	up2 := conntest.NewCollector()
	startClient(t, up2, WithBroker("tcp://"+b.addr()), WithSession("gw-pipe", false), WithTopics(1, "sensors/{device}/#"))
	pub(t, b, "sensors/a/x", "after")
	fs = up2.WaitFor(t, 5*time.Second, "the next message", func(fs []gateway.Frame) bool { return len(fs) >= 1 })
	if len(fs) != 1 || string(fs[0].Payload) != "after" {
		t.Fatalf("after the reconnect: %d frames, first %q; want only \"after\" (redelivered = not acknowledged)", len(fs), fs[0].Payload)
	}
}

// mosqStdin runs a mosquitto tool with stdin.
func mosqStdin(t *testing.T, stdin, tool string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.RequireCommand(t, tool), args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func ctxDisconnect(t *testing.T, c *Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestListenerBatchesPublishes: QoS 1 PUBLISHes that arrive in one read
// are delivered in one batch, in order, and their PUBACKs leave in one
// write (the device reads them all at once), each only after the batch
// was accepted.
func TestListenerBatchesPublishes(t *testing.T) {
	up := conntest.NewBatchCollector()
	_, h, p := startListener(t, up, append(devices, WithSessionLimits(32, 4096, 256<<10, 0))...)
	c, _, rc := rawSession(t, net.JoinHostPort(h, p), connectOpts{clientID: "batch", user: "dev1", pass: "pw1", keepalive: 60})
	if rc != 0 {
		t.Fatalf("connack %d", rc)
	}
	release := up.Hold()
	defer release()
	var burst []byte
	for i := range 10 {
		burst = append(burst, publishQoS1Packet("devices/dev1/t", uint16(i+1), []byte(fmt.Sprint(i)))...)
	}
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	conntest.Eventually(t, 5*time.Second, "the batch delivered", func() bool { return len(up.Batches()) == 1 })
	// Nothing is acknowledged while the batch waits.
	_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("read %d bytes before the batch was accepted", n)
	}
	release()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1024)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != 40 {
		t.Fatalf("first read got %d bytes, want all 10 PUBACKs (40 bytes) from one write: % x", n, buf[:n])
	}
	for i := range 10 {
		if pa := buf[4*i : 4*i+4]; pa[0] != 0x40 || pa[1] != 2 || int(pa[2])<<8|int(pa[3]) != i+1 {
			t.Fatalf("PUBACK %d is % x", i, pa)
		}
	}
	if bs := up.Batches(); len(bs) != 1 || bs[0] != 10 {
		t.Fatalf("batches %v, want one of 10", bs)
	}
	for i, f := range up.Frames() {
		if string(f.Payload) != fmt.Sprint(i) || f.Topic != "t" {
			t.Fatalf("frame %d: %s %q", i, f.Topic, f.Payload)
		}
	}
}

// TestListenerBatchRefusesMalformedV5: in a batch of MQTT 5 QoS 1
// PUBLISHes, the one whose payload the codec rejects gets PUBACK 0x99
// and the others 0x00, in order.
func TestListenerBatchRefusesMalformedV5(t *testing.T) {
	port := testenv.FreePort(t)
	l, err := NewListener(WithListenAddress("127.0.0.1:"+strconv.Itoa(port)), WithListenerLogger(conntest.QuietLogger()),
		WithDeviceAuth(DeviceAuth{Username: "dev1", Password: "pw1"}))
	if err != nil {
		t.Fatal(err)
	}
	up := make(chanSink, 8)
	g, err := gateway.New(gateway.WithConnector("field", l), gateway.WithCodec("json", conntest.StrictCodec),
		gateway.WithConnectorCodec("field", "json"), gateway.WithSink("up", up),
		gateway.WithLogger(conntest.QuietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conntest.WaitTCP(t, addr)
	c, ack := sessionV5(t, addr, connectV5("v5-batch", "dev1", "pw1"))
	if ack.ReasonCode != 0 {
		t.Fatalf("connack %#x", ack.ReasonCode)
	}
	var burst []byte
	payloads := []string{`{"v":1}`, "\x00\xff", `{"v":3}`}
	for i, pl := range payloads {
		burst = append(burst, encode(t, packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName:   "devices/dev1/x", PacketID: uint16(i + 1), Payload: []byte(pl),
		}, 5)...)
	}
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	rd := mqttwire.NewReader(readDeadline{c}, 256, 0) // one reader: the acks may come in one segment
	rd.Idle = 5 * time.Second
	for i, want := range []byte{0, packets.ErrPayloadFormatInvalid.Code, 0} {
		first, body, err := rd.Next()
		if err != nil {
			t.Fatal(err)
		}
		pa := packets.Packet{ProtocolVersion: 5}
		if err := mqttwire.Decode(&pa, first, body); err != nil {
			t.Fatal(err)
		}
		if pa.FixedHeader.Type != packets.Puback || pa.PacketID != uint16(i+1) || pa.ReasonCode != want {
			t.Fatalf("ack %d: type %d id %d reason %#x, want PUBACK %d reason %#x", i, pa.FixedHeader.Type, pa.PacketID, pa.ReasonCode, i+1, want)
		}
	}
	for _, want := range []string{`field|dev1|x|{"v":1}`, `field|dev1|x|{"v":3}`} {
		select {
		case got := <-up:
			if got != want {
				t.Fatalf("sink got %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("nothing reached the sink")
		}
	}
}
