package mqtt

import (
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/mochi-mqtt/server/v2/packets"
)

// An MQTT 5 device's traceparent and tracestate user properties become
// the frame's trace context.
func TestListenerTraceUserProperty(t *testing.T) {
	col := conntest.NewCollector()
	_, h, p := startListener(t, col, devices...)
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	out, err := mosq(t, "mosquitto_pub", "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-V", "mqttv5", "-q", "1",
		"-D", "publish", "user-property", "traceparent", tp,
		"-D", "publish", "user-property", "tracestate", "rojo=1",
		"-t", "devices/dev1/t", "-m", "21")
	if err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	fs := col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) == 1 })
	if got := fs[0].Trace; got.TraceParent() != tp || got.State != "rojo=1" {
		t.Fatalf("trace context %+v, want %s", got, tp)
	}
}

func TestUserPropertyTrace(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	for _, c := range []struct {
		name  string
		props []packets.UserProperty
		want  string
	}{
		{"none", nil, ""},
		{"other keys", []packets.UserProperty{{Key: "a", Val: tp}}, ""},
		{"valid", []packets.UserProperty{{Key: "x", Val: "y"}, {Key: "traceparent", Val: tp}}, tp},
		{"first wins", []packets.UserProperty{{Key: "traceparent", Val: tp}, {Key: "traceparent", Val: "junk"}}, tp},
		{"malformed", []packets.UserProperty{{Key: "traceparent", Val: "00-abc-def-01"}}, ""},
	} {
		got := userPropertyTrace(c.props)
		if c.want == "" && got.IsValid() || c.want != "" && got.TraceParent() != c.want {
			t.Errorf("%s: got %+v, want %q", c.name, got, c.want)
		}
	}
}
