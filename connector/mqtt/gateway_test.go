package mqtt

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

type chanSink = conntest.RawSink

// TestThroughGateway runs the listener from YAML inside a real gateway and
// publishes with mosquitto_pub.
func TestThroughGateway(t *testing.T) {
	testenv.RequireCommand(t, "mosquitto_pub")
	port := testenv.FreePort(t)
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.ParseConfig([]byte(`
connectors:
  - name: field
    mqtt:
      address: 127.0.0.1:`+strconv.Itoa(port)+`
      devices:
        - {username: meter-1, password: pw}
`), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sink := make(chanSink, 4)
	g, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg), gateway.WithSink("t", sink),
		gateway.WithLogger(conntest.QuietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	conntest.WaitTCP(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if out, err := mosq(t, "mosquitto_pub", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-u", "meter-1", "-P", "pw",
		"-q", "1", "-t", "devices/meter-1/energy", "-m", "42"); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	select {
	case got := <-sink:
		if got != "field|meter-1|energy|42" { // the topic after the device id
			t.Fatalf("sink got %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing reached the sink")
	}
}
