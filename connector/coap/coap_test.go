package coap

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
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

func start(t *testing.T, up gateway.Uplink, opts ...Option) (*Connector, string) {
	t.Helper()
	opts = append([]Option{WithAddress("127.0.0.1:0"), WithLogger(conntest.QuietLogger())}, opts...)
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
	return c, c.Addr().String()
}

// coapClient runs libcoap's coap-client and returns its output.
func coapClient(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return conntest.Run(20*time.Second, testenv.RequireCommand(t, "coap-client-notls"), append([]string{"-B", "5"}, args...)...)
}

func TestLibcoapClientPost(t *testing.T) {
	col := conntest.NewCollector()
	c, addr := start(t, col, WithMaxBody(8<<10))
	big := bytes.Repeat([]byte("0123456789abcdef"), 300) // 4800 bytes: block-wise
	bigFile := filepath.Join(t.TempDir(), "big.bin")
	if err := os.WriteFile(bigFile, big, 0o600); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(t.TempDir(), "huge.bin")
	if err := os.WriteFile(huge, bytes.Repeat([]byte("x"), 9<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	uri := "coap://" + addr
	tests := []struct {
		name    string
		args    []string
		want    string // in output
		device  string
		topic   string
		payload []byte
	}{
		{"post", []string{"-m", "post", "-e", "21.5", uri + "/devices/dev1/env/temp"}, "", "dev1", "env/temp", []byte("21.5")},
		{"put", []string{"-m", "put", "-e", "on", uri + "/devices/dev2/state"}, "", "dev2", "state", []byte("on")},
		{"block-wise", []string{"-m", "post", "-b", "256", "-f", bigFile, uri + "/devices/dev1/blob"}, "", "dev1", "blob", big},
		{"too large", []string{"-m", "post", "-b", "1024", "-f", huge, uri + "/devices/dev1/blob"}, "4.13", "", "", nil},
		{"bad path", []string{"-m", "post", "-e", "1", uri + "/devices/onlydevice"}, "4.00", "", "", nil},
		{"empty body", []string{"-m", "post", uri + "/devices/dev1/x"}, "4.00", "", "", nil},
		{"get not allowed", []string{"-m", "get", uri + "/devices/dev1/x"}, "4.05", "", "", nil},
		{"discovery", []string{"-m", "get", uri + "/.well-known/core"}, `</devices>;rt="ingest"`, "", "", nil},
	}
	for _, tt := range tests {
		before := col.Len()
		out, err := coapClient(t, tt.args...)
		if tt.device == "" {
			if !strings.Contains(out, tt.want) {
				t.Errorf("%s: output %q (err %v), want %q", tt.name, out, err, tt.want)
			}
			if col.Len() != before {
				t.Errorf("%s: refused request delivered a frame", tt.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: coap-client: %v %s", tt.name, err, out)
		}
		fs := col.WaitFor(t, 5*time.Second, tt.name, func(fs []gateway.Frame) bool { return len(fs) > before })
		f := fs[len(fs)-1]
		if f.Device != tt.device || f.Topic != tt.topic || !bytes.Equal(f.Payload, tt.payload) {
			t.Errorf("%s: frame %s %s %d bytes, want %s %s %d bytes", tt.name, f.Device, f.Topic, len(f.Payload), tt.device, tt.topic, len(tt.payload))
		}
	}
	if st := c.Stats(); st.Devices["dev1"].Frames != 2 || st.Total.Errors < 2 {
		t.Errorf("stats %+v", st)
	}
}

// TestRefusedFrame5_03: when the pipeline refuses, the device gets 5.03
// and no 2.04.
func TestRefusedFrame503(t *testing.T) {
	col := conntest.NewCollector()
	col.Refuse(gateway.ErrDropped)
	_, addr := start(t, col)
	out, _ := coapClient(t, "-m", "post", "-e", "x", "coap://"+addr+"/devices/d/t")
	if !strings.Contains(out, "5.03") {
		t.Fatalf("output %q, want 5.03", out)
	}
}

// coapServer runs libcoap's example server on a free port; it offers
// /example_data (GET, PUT, observable) and, with -d, creates resources
// on PUT.
func coapServer(t *testing.T, port int) func() {
	t.Helper()
	bin := testenv.RequireCommand(t, "coap-server-notls")
	cmd := exec.Command(bin, "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-d", "10", "-v", "0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	// Ready when it answers a GET.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := coapClient(t, "-m", "get", "coap://127.0.0.1:"+strconv.Itoa(port)+"/.well-known/core")
		if err == nil && strings.Contains(out, "example_data") {
			return stop
		}
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("coap-server not ready: %v %q", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestObserveLibcoapServerAndDownlink(t *testing.T) {
	port := testenv.FreeUDPPort(t)
	stop := coapServer(t, port)
	defer func() { stop() }()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	col := conntest.NewCollector()
	c, _ := start(t, col, WithAddress(""), WithBackoff(20*time.Millisecond, 200*time.Millisecond), WithKeepAlive(time.Second),
		WithDownlinkMethod(true),
		WithObserve(Observe{Device: "lamp", Address: addr, Path: "/example_data", Refresh: 2 * time.Second}))
	col.WaitFor(t, 5*time.Second, "registration response", func(fs []gateway.Frame) bool { return len(fs) >= 1 })

	// Downlink: PUT through the connector changes the resource, and the
	// observation reports the new value.
	if err := c.Write(context.Background(), &gateway.Frame{Device: "lamp", Topic: "example_data", Payload: []byte("brightness=7")}); err != nil {
		t.Fatal(err)
	}
	fs := col.WaitFor(t, 5*time.Second, "notification after downlink", func(fs []gateway.Frame) bool {
		return string(fs[len(fs)-1].Payload) == "brightness=7"
	})
	if f := fs[len(fs)-1]; f.Device != "lamp" || f.Topic != "example_data" {
		t.Fatalf("frame %+v", f)
	}
	// A change by another client is notified too.
	if out, err := coapClient(t, "-m", "put", "-e", "brightness=2", "coap://"+addr+"/example_data"); err != nil {
		t.Fatalf("coap-client put: %v %s", err, out)
	}
	col.WaitFor(t, 5*time.Second, "notification of a foreign change", func(fs []gateway.Frame) bool {
		return string(fs[len(fs)-1].Payload) == "brightness=2"
	})

	// The device restarts (forgetting its observers): the connector
	// re-registers and notifications flow again.
	stop()
	time.Sleep(200 * time.Millisecond)
	stop = coapServer(t, port)
	conntest.Eventually(t, 15*time.Second, "re-registration", func() bool { return c.Stats().Devices["lamp"].Reconnects > 0 })
	if out, err := coapClient(t, "-m", "put", "-e", "after-restart", "coap://"+addr+"/example_data"); err != nil {
		t.Fatalf("coap-client put: %v %s", err, out)
	}
	col.WaitFor(t, 10*time.Second, "notification after restart", func(fs []gateway.Frame) bool {
		return string(fs[len(fs)-1].Payload) == "after-restart"
	})

	if err := c.Write(context.Background(), &gateway.Frame{Device: "nobody", Topic: "x", Payload: []byte("1")}); !errors.Is(err, gateway.ErrNoRoute) {
		t.Fatalf("write to unknown device: %v", err)
	}
}

// TestGarbageDatagrams: random datagrams do not stop the server from
// serving a real device.
func TestGarbageDatagrams(t *testing.T) {
	col := conntest.NewCollector()
	_, addr := start(t, col)
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 300; i++ {
		d := make([]byte, rng.IntN(64))
		for j := range d {
			d[j] = byte(rng.Uint32())
		}
		if i%2 == 0 && len(d) > 0 {
			d[0] = 0x40 | d[0]&0x0f // CoAP version 1, confirmable
		}
		_, _ = conn.Write(d)
	}
	out, err := coapClient(t, "-m", "post", "-e", "ok", "coap://"+addr+"/devices/dev1/t")
	if err != nil {
		t.Fatalf("after garbage: %v %s", err, out)
	}
	col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) == 1 && string(fs[0].Payload) == "ok" })
}

func TestParsePath(t *testing.T) {
	tests := []struct {
		prefix, path, device, topic string
		ok                          bool
	}{
		{"devices", "/devices/d1/temp", "d1", "temp", true},
		{"devices", "devices/d1/a/b", "d1", "a/b", true},
		{"", "/d1/a", "d1", "a", true},
		{"devices", "/other/d1/a", "", "", false},
		{"devices", "/devices/d1", "", "", false},
		{"devices", "/devices//a", "", "", false},
		{"devices", "/devices/d+/a", "", "", false},
		{"devices", "/devices/d/a//b", "", "", false},
		{"devices", "/devices/d/a/", "", "", false},
	}
	for _, tt := range tests {
		d, tp, err := ParsePath(tt.prefix, tt.path)
		if (err == nil) != tt.ok || d != tt.device || tp != tt.topic {
			t.Errorf("ParsePath(%q, %q) = %q, %q, %v", tt.prefix, tt.path, d, tp, err)
		}
	}
}

// FuzzParsePath: an accepted path yields a clean device and topic that
// rebuild the path.
func FuzzParsePath(f *testing.F) {
	f.Add("devices", "/devices/d1/temp")
	f.Add("", "/x/y/z")
	f.Add("devices", "/devices//")
	f.Fuzz(func(t *testing.T, prefix, path string) {
		d, tp, err := ParsePath(prefix, path)
		if err != nil {
			return
		}
		if d == "" || tp == "" || strings.Contains(d, "/") || strings.ContainsAny(d+tp, "+#") || hasControl(d+tp) {
			t.Fatalf("ParsePath(%q, %q) = %q, %q", prefix, path, d, tp)
		}
		rebuilt := prefixSlash(prefix) + d + "/" + tp
		if strings.TrimPrefix(path, "/") != rebuilt {
			t.Fatalf("ParsePath(%q, %q) = %q, %q; rebuilds %q", prefix, path, d, tp, rebuilt)
		}
	})
}

func TestRegisterStrictYAML(t *testing.T) {
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ yaml, wantErr string }{
		{"connectors:\n  - name: c\n    coap: {address: '127.0.0.1:0', observe: [{device: m, address: '127.0.0.1:5683', path: /e}]}\n", ""},
		{"connectors:\n  - name: c\n    coap: {adress: x}\n", "connectors[0].coap.adress: unknown key"},
		{"connectors:\n  - name: c\n    coap: {downlink_method: patch}\n", "connectors[0].coap.downlink_method: want post or put"},
		{"connectors:\n  - name: c\n    coap: {inflight_window: -1}\n", "connectors[0].coap.inflight_window: in-flight window must be positive"},
		{"connectors:\n  - name: c\n    coap: {observe: [{device: m, path: /e}]}\n", "connectors[0].coap.observe: observe[0]"},
		{"connectors:\n  - name: c\n    coap: {max_body: 0x7fffffff}\n", "connectors[0].coap.max_body"},
	}
	for _, tt := range tests {
		cfg, err := gateway.ParseConfig([]byte(tt.yaml), "t.yaml")
		if err == nil {
			_, err = gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg))
		}
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%q:\n err = %v\n want %q", tt.yaml, err, tt.wantErr)
		}
	}
}
