package mqtt

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

// TestMalformedPayload: an MQTT 5 QoS 1 publish its codec cannot decode
// gets PUBACK 0x99 (payload format invalid) and is not accepted; MQTT
// 3.1.1 cannot say so, so the frame is acknowledged and goes to the
// dead-letter sink, raw.
func TestMalformedPayload(t *testing.T) {
	testenv.RequireCommand(t, "mosquitto_pub")
	port := testenv.FreePort(t)
	l, err := NewListener(WithListenAddress("127.0.0.1:"+strconv.Itoa(port)), WithListenerLogger(conntest.QuietLogger()),
		WithDeviceAuth(DeviceAuth{Username: "dev1", Password: "pw1"}))
	if err != nil {
		t.Fatal(err)
	}
	up, dead := make(chanSink, 8), make(chanSink, 8)
	g, err := gateway.New(gateway.WithConnector("field", l), gateway.WithCodec("json", conntest.StrictCodec),
		gateway.WithConnectorCodec("field", "json"), gateway.WithSink("up", up), gateway.WithSink("dead", dead),
		gateway.WithRoute(gateway.Route{Topic: "#", Sinks: []string{"up"}}),
		gateway.WithDeadLetter(gateway.DeadLetterConfig{Sink: "dead"}), gateway.WithLogger(conntest.QuietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	conntest.WaitTCP(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	blob := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(blob, []byte{0x00, 0xff, 0x10, 0x80}, 0o600); err != nil {
		t.Fatal(err)
	}
	pub := func(args ...string) (string, error) {
		return mosq(t, "mosquitto_pub", append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(port), "-u", "dev1", "-P", "pw1",
			"-q", "1", "-t", "devices/dev1/x"}, args...)...)
	}
	next := func(c chanSink, what string) string {
		t.Helper()
		select {
		case got := <-c:
			return got
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing reached the %s sink", what)
			return ""
		}
	}

	out, err := pub("-V", "5", "-f", blob)
	if !strings.Contains(strings.ToLower(out), "payload format invalid") {
		t.Fatalf("v5 blob: err %v output %q, want a PUBACK with reason 0x99 (payload format invalid)", err, out)
	}
	if out, err := pub("-V", "5", "-m", `{"v":1}`); err != nil {
		t.Fatalf("v5 good payload: %v %s", err, out)
	}
	if got := next(up, "device"); got != `field|dev1|x|{"v":1}` {
		t.Fatalf("up got %q", got)
	}
	if st := g.Stats(); st.MalformedRefused != 1 || st.DeadLetters != 0 {
		t.Fatalf("after v5: stats %+v", st)
	}

	if out, err := pub("-f", blob); err != nil {
		t.Fatalf("v3.1.1 blob not acknowledged: %v %s", err, out)
	}
	if got := next(dead, "dead-letter"); got != "field|dev1|x|\x00\xff\x10\x80" {
		t.Fatalf("dead letter %q", got)
	}
	if st := g.Stats(); st.DeadLetters != 1 {
		t.Fatalf("after v3.1.1: stats %+v", st)
	}
	select {
	case got := <-up:
		t.Fatalf("malformed frame reached the device route: %q", got)
	default:
	}
}
