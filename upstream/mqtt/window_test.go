package mqtt

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/iotgw/gateway"
)

// packetCounter relays one MQTT connection between the sink and the broker
// and tracks how many QoS 1 PUBLISH packets are unacknowledged at a time.
type packetCounter struct {
	ln                net.Listener
	target            string
	mu                sync.Mutex
	outstanding, peak int
	publishes         atomic.Int64
	wg                sync.WaitGroup
}

func startCounter(t *testing.T, target string) *packetCounter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &packetCounter{ln: ln, target: target}
	p.wg.Add(1)
	go func() { // ends when the listener closes
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.wg.Add(2)
			go func() { defer p.wg.Done(); p.relay(c, up, 3); up.Close() }()
			go func() { defer p.wg.Done(); p.relay(up, c, 4); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.wg.Wait() })
	return p
}

// relay copies MQTT packets from src to dst, counting packets of type
// kind (3 PUBLISH towards the broker, 4 PUBACK back).
func (p *packetCounter) relay(src, dst net.Conn, kind byte) {
	r := bufio.NewReader(src)
	for {
		hdr, err := r.ReadByte()
		if err != nil {
			return
		}
		frame := []byte{hdr}
		n, mult := 0, 1
		for {
			b, err := r.ReadByte()
			if err != nil {
				return
			}
			frame = append(frame, b)
			n += int(b&0x7f) * mult
			mult *= 128
			if b&0x80 == 0 {
				break
			}
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		if hdr>>4 == kind {
			p.mu.Lock()
			if kind == 3 && (hdr>>1)&3 == 1 {
				p.publishes.Add(1)
				p.outstanding++
				p.peak = max(p.peak, p.outstanding)
			} else if kind == 4 {
				p.outstanding--
			}
			p.mu.Unlock()
		}
		if _, err := dst.Write(append(frame, body...)); err != nil && !errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

func TestInFlightWindowIsBounded(t *testing.T) {
	b := startMosquitto(t, nil)
	for _, window := range []int{1, 8} {
		p := startCounter(t, b.addr())
		s := testSink(t, Config{Broker: "tcp://" + p.ln.Addr().String(), ClientID: "window", InFlight: window})
		if err := s.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		var batch []*gateway.Message
		for i := 0; i < 300; i++ {
			batch = append(batch, msgWithID(i, "d"))
		}
		if err := s.Publish(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		_ = s.Close()
		p.mu.Lock()
		peak, out := p.peak, p.outstanding
		p.mu.Unlock()
		if p.publishes.Load() != 300 || out != 0 {
			t.Fatalf("window %d: relayed %d publishes, %d unacknowledged after Publish returned", window, p.publishes.Load(), out)
		}
		if peak > window || window > 1 && peak < 2 {
			t.Fatalf("window %d: peak of %d unacknowledged publishes", window, peak)
		}
		t.Logf("window %d: peak %d in flight", window, peak)
	}
}
