package mqtt

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

func startListener(t *testing.T, up gateway.Uplink, opts ...ListenerOption) (*Listener, string, string) {
	t.Helper()
	opts = append([]ListenerOption{WithListenAddress("127.0.0.1:0"), WithListenerLogger(conntest.QuietLogger())}, opts...)
	l, err := NewListener(opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Connect(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Disconnect(ctx); err != nil {
			t.Errorf("disconnect: %v", err)
		}
	})
	host, port, _ := net.SplitHostPort(l.Addr().String())
	return l, host, port
}

// mosq runs a mosquitto client tool and returns its combined output and
// exit error.
func mosq(t *testing.T, tool string, args ...string) (string, error) {
	t.Helper()
	return conntest.Run(15*time.Second, testenv.RequireCommand(t, tool), args...)
}

var devices = []ListenerOption{
	WithDeviceAuth(DeviceAuth{Username: "dev1", Password: "pw1"}),
	WithDeviceAuth(DeviceAuth{Username: "dev2", Password: "pw2", Device: "boiler-2"}),
}

func TestListenerMosquittoPub(t *testing.T) {
	col := conntest.NewCollector()
	l, h, p := startListener(t, col, devices...)
	tests := []struct {
		name    string
		args    []string
		wantErr bool
		device  string
		topic   string
		payload string
	}{
		{"qos0", []string{"-u", "dev1", "-P", "pw1", "-t", "devices/dev1/temp", "-m", "21.5"}, false, "dev1", "temp", "21.5"},
		{"qos1 v311", []string{"-u", "dev1", "-P", "pw1", "-q", "1", "-t", "devices/dev1/hum", "-m", "40"}, false, "dev1", "hum", "40"},
		{"qos2 v5 mapped device", []string{"-V", "5", "-u", "dev2", "-P", "pw2", "-q", "2", "-t", "devices/boiler-2/p", "-m", "3"}, false, "boiler-2", "p", "3"},
		{"wrong password", []string{"-u", "dev1", "-P", "nope", "-t", "devices/dev1/temp", "-m", "x"}, true, "", "", ""},
		{"unknown user", []string{"-u", "mallory", "-P", "x", "-t", "devices/mallory/temp", "-m", "x"}, true, "", "", ""},
		{"no credentials", []string{"-t", "devices/dev1/temp", "-m", "x"}, true, "", "", ""},
		{"acl denied qos1 v311", []string{"-u", "dev1", "-P", "pw1", "-q", "1", "-t", "devices/dev2/temp", "-m", "x"}, true, "", "", ""},
	}
	for _, tt := range tests {
		before := col.Len()
		out, err := mosq(t, "mosquitto_pub", append([]string{"-h", h, "-p", p}, tt.args...)...)
		if (err != nil) != tt.wantErr {
			t.Fatalf("%s: mosquitto_pub err = %v (%s), wantErr %v", tt.name, err, out, tt.wantErr)
		}
		if tt.wantErr {
			if col.Len() != before {
				t.Fatalf("%s: a refused publish was delivered", tt.name)
			}
			continue
		}
		fs := col.WaitFor(t, 5*time.Second, tt.name, func(fs []gateway.Frame) bool { return len(fs) > before })
		f := fs[len(fs)-1]
		if f.Device != tt.device || f.Topic != tt.topic || string(f.Payload) != tt.payload {
			t.Errorf("%s: frame %s %s %q, want %s %s %q", tt.name, f.Device, f.Topic, f.Payload, tt.device, tt.topic, tt.payload)
		}
	}
	// An ACL-denied QoS 0 publish is dropped silently; the next allowed
	// one on the same connection still arrives, so the drop is observable.
	out, err := mosq(t, "mosquitto_pub", "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-V", "5", "-q", "1",
		"-t", "devices/dev2/temp", "-m", "stolen")
	if err == nil && !strings.Contains(strings.ToLower(out), "not authori") {
		t.Errorf("v5 acl-denied qos1 publish: err %v, output %q; want a not-authorized PUBACK", err, out)
	}
	for _, f := range col.Frames() {
		if strings.Contains(f.Topic, "dev2") || string(f.Payload) == "stolen" {
			t.Fatalf("ACL-denied frame delivered: %+v", f)
		}
	}
	st := l.Stats()
	if st.Devices["dev1"].Frames != 2 || st.Devices["dev1"].Errors < 2 || st.Devices["boiler-2"].Frames != 1 {
		t.Errorf("stats: %+v", st.Devices)
	}
	if st.Devices["dev1"].Reconnects == 0 {
		t.Error("a device's second session was not counted as a reconnect")
	}
}

func TestListenerSubscribeACLAndDownlink(t *testing.T) {
	col := conntest.NewCollector()
	l, h, p := startListener(t, col, devices...)
	// Subscribing to another device's commands is refused.
	out, _ := mosq(t, "mosquitto_sub", "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-t", "devices/dev2/cmd/#", "-C", "1", "-W", "2")
	if !strings.Contains(strings.ToLower(out), "denied") {
		t.Errorf("subscribe to a foreign topic: output %q, want the subscription denied", out)
	}
	// Subscribing to a wider filter than allowed is refused too.
	out, _ = mosq(t, "mosquitto_sub", "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-t", "devices/#", "-C", "1", "-W", "2")
	if !strings.Contains(strings.ToLower(out), "denied") {
		t.Errorf("subscribe to a wider filter: output %q, want the subscription denied", out)
	}

	// Downlink reaches the device's own command subscription.
	bin := testenv.RequireCommand(t, "mosquitto_sub")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-q", "1", "-t", "devices/dev1/cmd/#", "-C", "1", "-v")
	var buf bytes.Buffer
	cmd.Stdout = &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	conntest.Eventually(t, 5*time.Second, "subscriber session", func() bool { return l.Sessions() == 1 })
	var werr error
	deadline := time.After(10 * time.Second)
loop:
	for {
		werr = l.Write(ctx, &gateway.Frame{Device: "dev1", Topic: "led", Payload: []byte("on")})
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("mosquitto_sub: %v", err)
			}
			break loop
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("command never arrived (last write err %v)", werr)
		}
	}
	if got := strings.TrimSpace(buf.String()); got != "devices/dev1/cmd/led on" {
		t.Fatalf("device got %q", got)
	}
}

func TestListenerMaxSessionsAndReconnect(t *testing.T) {
	col := conntest.NewCollector()
	l, h, p := startListener(t, col, append(devices, WithMaxSessions(1))...)
	bin := testenv.RequireCommand(t, "mosquitto_sub")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	holder := exec.CommandContext(ctx, bin, "-h", h, "-p", p, "-u", "dev2", "-P", "pw2", "-t", "devices/boiler-2/cmd/#")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	conntest.Eventually(t, 5*time.Second, "first session", func() bool { return l.Sessions() == 1 })
	out, err := mosq(t, "mosquitto_pub", "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-t", "devices/dev1/x", "-m", "1")
	if err == nil {
		t.Fatalf("second session accepted over the limit: %s", out)
	}
	// The holder goes away; the slot frees and dev1 gets in.
	cancel()
	_ = holder.Wait()
	conntest.Eventually(t, 5*time.Second, "session released", func() bool { return l.Sessions() == 0 })
	if out, err := mosq(t, "mosquitto_pub", "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-t", "devices/dev1/x", "-m", "1"); err != nil {
		t.Fatalf("after the slot freed: %v %s", err, out)
	}
	col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) == 1 })
}

// TestListenerRefusedFrames: when the pipeline refuses a frame, a QoS 1
// publisher is not acknowledged.
func TestListenerRefusedFrames(t *testing.T) {
	col := conntest.NewCollector()
	col.Refuse(gateway.ErrDropped)
	_, h, p := startListener(t, col, devices...)
	out, err := mosq(t, "mosquitto_pub", "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-V", "5", "-q", "1", "-t", "devices/dev1/x", "-m", "1")
	if err == nil && !strings.Contains(strings.ToLower(out), "quota") {
		t.Errorf("v5 refused frame: err %v output %q, want a quota-exceeded PUBACK", err, out)
	}
	out, err = mosq(t, "mosquitto_pub", "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-q", "1", "-t", "devices/dev1/x", "-m", "1")
	if err == nil {
		t.Errorf("v3.1.1 refused frame acknowledged: %q", out)
	}
	if col.Len() != 0 {
		t.Fatal("refused frames collected")
	}
}

// TestListenerGarbage: random bytes and truncated packets from some
// connections neither crash the broker nor stop a good device.
func TestListenerGarbage(t *testing.T) {
	col := conntest.NewCollector()
	l, h, p := startListener(t, col, devices...)
	addr := net.JoinHostPort(h, p)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 50; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		var junk []byte
		switch i % 3 {
		case 0: // random bytes
			junk = make([]byte, 1+rng.IntN(200))
			for j := range junk {
				junk[j] = byte(rng.Uint32())
			}
		case 1: // CONNECT header announcing more than is sent
			junk = []byte{0x10, 0xff, 0xff, 0xff, 0x7f, 0, 4, 'M', 'Q'}
		default: // a valid-looking CONNECT with a bogus protocol level
			junk = []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 9, 2, 0, 60, 0, 0}
		}
		_, _ = c.Write(junk)
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = c.Read(make([]byte, 16))
		c.Close()
	}
	// An authenticated device that then sends a broken PUBLISH (topic
	// length past the packet end) is cut off and counted as malformed.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(connectPacket("raw-dev2", "dev2", "pw2")); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
		t.Fatalf("connack %x %v", ack, err)
	}
	_, _ = c.Write([]byte{0x30, 0x04, 0x00, 0x20, 'a', 'b'})
	conntest.Eventually(t, 5*time.Second, "malformed counted", func() bool { return l.Stats().Devices["boiler-2"].Malformed == 1 })
	if out, err := mosq(t, "mosquitto_pub", "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-q", "1", "-t", "devices/dev1/ok", "-m", "fine"); err != nil {
		t.Fatalf("good device after garbage: %v %s", err, out)
	}
	col.WaitFor(t, 5*time.Second, "good frame", func(fs []gateway.Frame) bool { return len(fs) == 1 && string(fs[0].Payload) == "fine" })
}

func TestListenerOptionsValidate(t *testing.T) {
	if _, err := NewListener(); err == nil {
		t.Error("listener without any auth accepted")
	}
	if _, err := NewListener(WithAnonymous(true), WithACL([]string{"a/#/b"}, nil)); err == nil {
		t.Error("bad ACL filter accepted")
	}
	if _, err := NewListener(WithDeviceAuth(DeviceAuth{Username: "u"})); err == nil {
		t.Error("empty password accepted")
	}
	if _, err := NewListener(WithAnonymous(true), WithCommandTopic("x/{device}/+", 1)); err == nil {
		t.Error("wildcard command topic accepted")
	}
}
