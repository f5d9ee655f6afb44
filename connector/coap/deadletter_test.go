package coap

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

type chanSink = conntest.RawSink

// TestMalformedPayload400: inside a gateway, a POST whose payload the
// connector's codec cannot decode is answered 4.00 (not 2.04 and then
// dropped); a good payload gets 2.04 and is delivered.
func TestMalformedPayload400(t *testing.T) {
	c, err := New(WithAddress("127.0.0.1:0"), WithLogger(conntest.QuietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	up := make(chanSink, 4)
	g, err := gateway.New(gateway.WithConnector("coap", c), gateway.WithCodec("json", conntest.StrictCodec),
		gateway.WithConnectorCodec("coap", "json"), gateway.WithSink("up", up), gateway.WithLogger(conntest.QuietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(5 * time.Second)
	for c.Addr() == nil {
		if time.Now().After(deadline) {
			t.Fatal("connector not listening")
		}
		time.Sleep(2 * time.Millisecond)
	}
	uri := "coap://" + c.Addr().String() + "/devices/dev1/env"
	blob := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(blob, []byte{0x00, 0xff, 0x10, 0x80}, 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := coapClient(t, "-m", "post", "-f", blob, uri)
	if !strings.Contains(out, "4.00") {
		t.Fatalf("blob: output %q, want 4.00", out)
	}
	if out, err := coapClient(t, "-m", "post", "-e", `{"t":1}`, uri); err != nil || strings.Contains(out, "4.") || strings.Contains(out, "5.") {
		t.Fatalf("good payload: %v %q", err, out)
	}
	select {
	case got := <-up:
		if got != `coap|dev1|env|{"t":1}` {
			t.Fatalf("sink got %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("good payload not delivered")
	}
	if st := g.Stats(); st.MalformedRefused != 1 || st.FramesIn != 1 {
		t.Fatalf("stats %+v", st)
	}
}
