package gateway

import (
	"context"
	"errors"
	"testing"
	"time"
)

type readOnlyConnector struct{ testConnector }

func (*readOnlyConnector) Write() {} // shadows Downlinker.Write with the wrong signature

func TestWriteEncodesWithConnectorCodec(t *testing.T) {
	conn := &testConnector{}
	ro := &readOnlyConnector{}
	g, err := New(WithLogger(quietLogger()), WithConnector("plc", conn), WithConnector("ro", ro),
		WithCodec("f64", f64Codec), WithConnectorCodec("plc", "f64"), WithConnectorCodec("ro", "f64"))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	waitFor(t, "connectors up", 2*time.Second, func() bool { return conn.uplink() != nil && ro.uplink() != nil })
	cmd := &Message{Device: "pump-1", Topic: "hr/10"}
	cmd.AddPoint("v", Float(42), "")
	if err := g.Write(context.Background(), "plc", cmd); err != nil {
		t.Fatal(err)
	}
	conn.mu.Lock()
	got := append([]string(nil), conn.written...)
	conn.mu.Unlock()
	if len(got) != 1 || got[0] != "pump-1/hr/10" {
		t.Fatalf("written %v", got)
	}
	if err := g.Write(context.Background(), "nope", cmd); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("unknown connector: %v", err)
	}
	if err := g.Write(context.Background(), "ro", cmd); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("read-only connector: %v", err)
	}
	bad := &Message{Device: "pump-1", Topic: "hr/10"} // no point "v": codec refuses
	if err := g.Write(context.Background(), "plc", bad); err == nil {
		t.Fatal("unencodable command accepted")
	}
}
