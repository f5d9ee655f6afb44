package coap

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

// TestFastPathBatchManyClients: many devices, each with its own socket
// and requests in flight, get every confirmable POST answered with its
// own message id at its own address, and every frame is delivered once,
// on the batched path and on the one-datagram path.
func TestFastPathBatchManyClients(t *testing.T) {
	for _, batch := range []int{16, 1} {
		t.Run("udp_batch="+strconv.Itoa(batch), func(t *testing.T) {
			up := &countingUplink{}
			c, addr := start(t, up, WithUDPBatch(batch), WithReaders(2))
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			const clients, total = 48, 2400
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := rawClient(ua, "dev"+strconv.Itoa(i), []byte(`{"t":1}`), &next, total); err != nil {
						errs <- fmt.Errorf("client %d: %w", i, err)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if got := up.n.Load(); got != total {
				t.Fatalf("%d frames for %d requests", got, total)
			}
			c.mu.Lock()
			f := c.front
			c.mu.Unlock()
			if f == nil || f.cache.len() == 0 {
				t.Fatal("the fast path did not answer")
			}
		})
	}
}

// longPost is a confirmable POST to /devices/dev/env with five 200-byte
// Uri-Query options, with body: about 1 KiB of options.
func longPost(mid uint16, body []byte) []byte {
	d := []byte{0x42, codePOST, byte(mid >> 8), byte(mid), 0xbe, 0xef}
	d = append(d, byte(optUriPath)<<4|7)
	d = append(d, "devices"...)
	d = append(d, 3)
	d = append(d, "dev"...)
	d = append(d, 3)
	d = append(d, "env"...)
	delta := byte(15 - optUriPath) // Uri-Query
	for range 5 {
		d = append(d, delta<<4|13, 200-13) // extended length 200
		d = append(d, bytes.Repeat([]byte("a"), 200)...)
		delta = 0
	}
	d = append(d, payloadMarker)
	return append(d, body...)
}

// TestFastPathBatchTooLarge: a datagram longer than a batch slot (max body
// plus 1 KiB) is cut by the kernel; the batched path answers it 4.13 with
// its message id and token instead of delivering a cut body, and serves
// the requests around it. The one-datagram path (64 KiB buffer) takes it
// whole.
func TestFastPathBatchTooLarge(t *testing.T) {
	for _, batch := range []int{16, 1} {
		t.Run("udp_batch="+strconv.Itoa(batch), func(t *testing.T) {
			col := conntest.NewCollector()
			_, addr := start(t, col, WithUDPBatch(batch), WithMaxBody(1000))
			conn := rawPeer(t, addr)
			small := rawPost("dev", []byte(`{"t":1}`))
			small[2], small[3] = 0, 1
			big := longPost(2, bytes.Repeat([]byte("x"), 1000)) // body within max_body, datagram > slot
			after := append([]byte(nil), small...)
			after[3] = 3
			// All three queued before the connector reads: one batch.
			for _, d := range [][]byte{small, big, after} {
				if _, err := conn.Write(d); err != nil {
					t.Fatal(err)
				}
			}
			codes := map[uint16]byte{}
			buf := make([]byte, 1500)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			for len(codes) < 3 {
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("answers so far %v: %v", codes, err)
				}
				if n < 6 || buf[0]>>4&3 != typeACK || !bytes.Equal(buf[4:6], []byte{0xbe, 0xef}) {
					t.Fatalf("answer % x is not an ACK with the token", buf[:n])
				}
				codes[uint16(buf[2])<<8|uint16(buf[3])] = buf[1]
			}
			wantBig, frames := byte(codeEntityTooLarge), 2
			if batch == 1 {
				wantBig, frames = codeChanged, 3
			}
			if codes[1] != codeChanged || codes[2] != wantBig || codes[3] != codeChanged {
				t.Fatalf("codes by message id %v; want 1: 0x44, 2: %#x, 3: 0x44", codes, wantBig)
			}
			col.WaitFor(t, 5*time.Second, "frames", func(fs []gateway.Frame) bool { return len(fs) == frames })
			for _, f := range col.Frames() {
				if len(f.Payload) != len(`{"t":1}`) && len(f.Payload) != 1000 {
					t.Errorf("frame with a %d-byte payload (cut?)", len(f.Payload))
				}
			}
		})
	}
}

// TestUDPBatchOption: the YAML key and the option's bounds.
func TestUDPBatchOption(t *testing.T) {
	if _, err := New(WithUDPBatch(0)); err == nil {
		t.Error("udp batch 0 accepted")
	}
	if _, err := New(WithUDPBatch(2000)); err == nil {
		t.Error("udp batch 2000 accepted")
	}
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.ParseConfig([]byte("connectors:\n  - name: c\n    coap: {address: 127.0.0.1:0, udp_batch: 0x7fffffff}\n"), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg), gateway.WithLogger(conntest.QuietLogger()))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("udp_batch")) {
		t.Fatalf("bad udp_batch: %v", err)
	}
}
