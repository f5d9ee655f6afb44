package localbroker

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/connector/sim"
)

// TestGatewayToSubscriber runs sim devices through a gateway into the
// embedded broker and reads the envelopes back with a raw MQTT 3.1.1
// client over TCP, as an external subscriber would.
func TestGatewayToSubscriber(t *testing.T) {
	b := New(Config{Address: "127.0.0.1:0"})
	g, err := gateway.New(
		gateway.WithConnector("sim", sim.New(sim.Config{Devices: 3, Interval: 20 * time.Millisecond})),
		gateway.WithCodec("sim", sim.Codec{}),
		gateway.WithSink("local", b),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(3 * time.Second)
	for b.Addr() == "" || b.Addr() == "127.0.0.1:0" {
		if time.Now().After(deadline) {
			t.Fatal("broker did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}

	c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	// CONNECT (MQTT 3.1.1, clean session, keepalive 30, client id "t").
	connect := []byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 't'}
	// SUBSCRIBE packet id 1, "gw/#" QoS 0.
	subscribe := []byte{0x82, 9, 0, 1, 0, 4, 'g', 'w', '/', '#', 0}
	if _, err := c.Write(append(connect, subscribe...)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	devices := map[string]bool{}
	for len(devices) < 3 {
		typ, body := readPacket(t, r)
		if typ>>4 != 3 { // not PUBLISH
			continue
		}
		tl := int(body[0])<<8 | int(body[1])
		payload := body[2+tl:]
		var env struct {
			ID     string `json:"id"`
			Device string `json:"device"`
			Points []struct {
				Name string `json:"name"`
			} `json:"points"`
		}
		if err := json.Unmarshal(payload, &env); err != nil {
			t.Fatalf("payload %q: %v", payload, err)
		}
		if len(env.ID) != 32 || len(env.Points) != 3 {
			t.Fatalf("envelope %s", payload)
		}
		devices[env.Device] = true
	}
}

func readPacket(t *testing.T, r *bufio.Reader) (byte, []byte) {
	t.Helper()
	typ, err := r.ReadByte()
	if err != nil {
		t.Fatal(err)
	}
	n, mul := 0, 1
	for {
		d, err := r.ReadByte()
		if err != nil {
			t.Fatal(err)
		}
		n += int(d&127) * mul
		if d&128 == 0 {
			break
		}
		mul *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	return typ, body
}

func TestInlineSubscribeAndRegistryErrors(t *testing.T) {
	b := New(Config{Address: "127.0.0.1:0", TopicPrefix: "x"})
	if err := b.Publish(context.Background(), nil); err == nil {
		t.Fatal("publish before start accepted")
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var mu sync.Mutex
	var got []string
	if err := b.Subscribe("x/#", 1, func(topic string, _ []byte) { mu.Lock(); got = append(got, topic); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	m := &gateway.Message{Device: "d1", Topic: "env"}
	if err := b.Publish(context.Background(), []*gateway.Message{m}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "x/d1/env" {
		t.Fatalf("inline subscriber got %v", got)
	}

	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.ParseConfig([]byte("sinks:\n  - name: l\n    localbroker: {address: nowhere}\n"), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg)); err == nil {
		t.Fatal("bad address accepted")
	}
}

// TestMalformedClientCannotCrashBroker: an MQTT 5 SUBSCRIBE whose filter
// lacks its options byte crashed the broker's decoder (and the process).
// Through the guard, only that client's connection ends; the broker keeps
// serving.
func TestMalformedClientCannotCrashBroker(t *testing.T) {
	b := New(Config{Address: "127.0.0.1:0"})
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", b.Addr(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		return c
	}
	bad := dial()
	defer bad.Close()
	// MQTT 5 CONNECT (clean start, no properties, client id "x"), then the
	// SUBSCRIBE: packet id 1, no properties, filter "a", no options byte.
	connect5 := []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 30, 0, 0, 1, 'x'}
	if _, err := bad.Write(append(connect5, 0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 'a')); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(bad)
	if err != nil || len(rest) == 0 || rest[0] != 0x20 {
		t.Fatalf("bad client got %x, %v: want its CONNACK, then the end of the stream", rest, err)
	}
	// The broker still answers a well-formed client.
	good := dial()
	defer good.Close()
	if _, err := good.Write([]byte{0x10, 13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 't'}); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(good, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("connack %x: %v", ack, err)
	}
}
