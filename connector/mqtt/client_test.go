package mqtt

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

// broker is a mosquitto process on a loopback port.
type broker struct {
	t    *testing.T
	port int
	conf string
	cmd  *exec.Cmd
}

func startBroker(t *testing.T) *broker {
	t.Helper()
	testenv.RequireCommand(t, "mosquitto")
	b := &broker{t: t, port: testenv.FreePort(t)}
	b.conf = filepath.Join(t.TempDir(), "mosquitto.conf")
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000\n", b.port)
	if err := os.WriteFile(b.conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *broker) addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

func (b *broker) start() {
	b.t.Helper()
	b.cmd = exec.Command("mosquitto", "-c", b.conf)
	if err := b.cmd.Start(); err != nil {
		b.t.Fatalf("mosquitto: %v", err)
	}
	conntest.WaitTCP(b.t, b.addr())
}

func (b *broker) stop() {
	if b.cmd != nil {
		_ = b.cmd.Process.Kill()
		_ = b.cmd.Wait()
		b.cmd = nil
	}
}

func startClient(t *testing.T, up gateway.Uplink, opts ...ClientOption) *Client {
	t.Helper()
	opts = append([]ClientOption{WithClientLogger(conntest.QuietLogger()), WithClientBackoff(20*time.Millisecond, 200*time.Millisecond)}, opts...)
	c, err := NewClient(opts...)
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
	conntest.Eventually(t, 10*time.Second, "client connected", func() bool { return c.Check(context.Background()) == nil })
	return c
}

func pub(t *testing.T, b *broker, topic, msg string, extra ...string) {
	t.Helper()
	args := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.port), "-q", "1", "-t", topic, "-m", msg}, extra...)
	if out, err := mosq(t, "mosquitto_pub", args...); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
}

func TestClientMosquittoBroker(t *testing.T) {
	b := startBroker(t)
	col := conntest.NewCollector()
	c := startClient(t, col, WithBroker("tcp://"+b.addr()), WithSession("gw-test-1", false),
		WithTopics(1, "sensors/{device}/#", "plant/+/{device}/state"))
	pub(t, b, "sensors/s1/temp", "21")
	pub(t, b, "plant/hall/pump-7/state", "on")
	pub(t, b, "sensors//temp", "no-device") // empty device level: counted, dropped
	fs := col.WaitFor(t, 5*time.Second, "two frames", func(fs []gateway.Frame) bool { return len(fs) >= 2 })
	got := map[string]string{}
	for _, f := range fs {
		got[f.Device+"|"+f.Topic] = string(f.Payload)
	}
	if got["s1|temp"] != "21" || got["pump-7|state"] != "on" { // the topic after the {device} level
		t.Fatalf("frames %v", got)
	}
	conntest.Eventually(t, 5*time.Second, "malformed counted", func() bool { return c.Stats().Total.Malformed == 1 })

	// Downlink: a command published through the broker.
	bin := testenv.RequireCommand(t, "mosquitto_sub")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, bin, "-h", "127.0.0.1", "-p", strconv.Itoa(b.port), "-t", "devices/s1/cmd/#", "-C", "1", "-v")
	var buf bytes.Buffer
	sub.Stdout = &buf
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- sub.Wait() }()
	for done := false; !done; {
		if err := c.Write(ctx, &gateway.Frame{Device: "s1", Topic: "fan", Payload: []byte("3")}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("mosquitto_sub: %v", err)
			}
			done = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	if s := strings.TrimSpace(buf.String()); s != "devices/s1/cmd/fan 3" {
		t.Fatalf("subscriber got %q", s)
	}
}

// TestClientBrokerRestart: the broker dies and comes back; the client
// reconnects with backoff, re-subscribes and frames flow again.
func TestClientBrokerRestart(t *testing.T) {
	b := startBroker(t)
	col := conntest.NewCollector()
	c := startClient(t, col, WithBroker("tcp://"+b.addr()), WithTopics(1, "sensors/{device}/#"))
	pub(t, b, "sensors/a/x", "1")
	col.WaitFor(t, 5*time.Second, "first frame", func(fs []gateway.Frame) bool { return len(fs) == 1 })
	b.stop()
	conntest.Eventually(t, 5*time.Second, "connection loss seen", func() bool { return c.Check(context.Background()) != nil })
	if err := c.Write(context.Background(), &gateway.Frame{Device: "a", Topic: "x", Payload: []byte("1")}); err == nil {
		t.Error("write while disconnected succeeded")
	}
	b.start()
	conntest.Eventually(t, 10*time.Second, "reconnected", func() bool { return c.Check(context.Background()) == nil })
	pub(t, b, "sensors/a/x", "2")
	col.WaitFor(t, 5*time.Second, "frame after restart", func(fs []gateway.Frame) bool {
		return len(fs) == 2 && string(fs[1].Payload) == "2"
	})
	if st := c.Stats().Total; st.Reconnects == 0 || st.Errors == 0 {
		t.Errorf("stats after restart: %+v", st)
	}
}

// TestClientRefusedFrameRedelivered: a QoS 1 message the pipeline refuses
// is not acknowledged; the broker delivers it again after the reconnect.
func TestClientRefusedFrameRedelivered(t *testing.T) {
	b := startBroker(t)
	col := conntest.NewCollector()
	col.Refuse(gateway.ErrDropped)
	c := startClient(t, col, WithBroker("tcp://"+b.addr()), WithSession("gw-redeliver", false), WithTopics(1, "sensors/{device}/#"))
	pub(t, b, "sensors/a/x", "keep-me")
	conntest.Eventually(t, 5*time.Second, "refusal", func() bool { return c.Stats().Total.Errors > 0 })
	col.Refuse(nil)
	col.WaitFor(t, 10*time.Second, "redelivery", func(fs []gateway.Frame) bool { return len(fs) >= 1 && string(fs[0].Payload) == "keep-me" })
}

// TestClientGarbageBroker: a "broker" that answers CONNECT with junk is
// retried with backoff and never crashes the connector.
func TestClientGarbageBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = conn.Write([]byte{0x20, 0x02, 0xff, 0xff, 0x30, 0x7f})
			conn.Close()
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	c, err := NewClient(WithClientLogger(conntest.QuietLogger()), WithBroker("tcp://"+ln.Addr().String()),
		WithTopics(0, "x/{device}"), WithClientBackoff(10*time.Millisecond, 50*time.Millisecond), WithTimeouts(time.Second, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Connect(context.Background(), conntest.NewCollector()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		select {
		case <-accepted:
		case <-time.After(5 * time.Second):
			t.Fatal("client did not retry")
		}
	}
	if c.Check(context.Background()) == nil {
		t.Error("connected to a garbage broker")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
}
