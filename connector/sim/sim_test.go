package sim

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

type collect struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *collect) Publish(_ context.Context, msgs []*gateway.Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range msgs {
		if _, ok := m.Point("temperature"); !ok {
			panic("no temperature")
		}
		c.n[m.Device]++
	}
	return nil
}

func (c *collect) devices() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}

func TestSimulatedFieldThroughGateway(t *testing.T) {
	sink := &collect{n: map[string]int{}}
	conn := New(Config{Devices: 5, Interval: 10 * time.Millisecond})
	g, err := gateway.New(gateway.WithConnector("sim", conn), gateway.WithCodec("sim", Codec{}), gateway.WithSink("s", sink))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()
	deadline := time.Now().Add(3 * time.Second)
	for sink.devices() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 5 devices reported", sink.devices())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := g.Stats(); st.DecodeErrors != 0 || st.Published == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCodecRoundTripAndErrors(t *testing.T) {
	f := gateway.AcquireFrame()
	defer f.Release()
	f.Payload = AppendFrame(f.Payload, 21.25, 40.5, 7)
	var m gateway.Message
	if err := (Codec{}).Decode(f, &m); err != nil {
		t.Fatal(err)
	}
	out, err := Codec{}.Encode(&m, nil)
	if err != nil || string(out) != string(f.Payload) {
		t.Fatalf("round trip: %x vs %x (%v)", out, f.Payload, err)
	}
	f.Payload = f.Payload[:5]
	if err := (Codec{}).Decode(f, &m); err == nil {
		t.Fatal("short frame accepted")
	}
}

func FuzzCodecDecode(f *testing.F) {
	f.Add(AppendFrame(nil, 1, 2, 3))
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, data []byte) {
		fr := &gateway.Frame{Payload: data}
		var m gateway.Message
		if err := (Codec{}).Decode(fr, &m); err != nil {
			return
		}
		out, err := Codec{}.Encode(&m, nil)
		if err != nil {
			t.Fatal(err)
		}
		var m2 gateway.Message
		if err := (Codec{}).Decode(&gateway.Frame{Payload: out}, &m2); err != nil {
			t.Fatal(err)
		}
	})
}
