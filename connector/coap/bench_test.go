package coap

import (
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

type countingUplink struct{ n atomic.Uint64 }

func (u *countingUplink) Deliver(_ context.Context, f *gateway.Frame) error {
	f.Release()
	u.n.Add(1)
	return nil
}

// rawPost builds a confirmable POST of payload to /devices/<device>/env
// with a 2-byte token; the caller sets the message id in bytes 2..3.
func rawPost(device string, payload []byte) []byte {
	d := []byte{0x42, codePOST, 0, 0, 0xbe, 0xef}
	seg := func(prev, num int, v string) []byte {
		return append([]byte{byte(num-prev)<<4 | byte(len(v))}, v...)
	}
	d = append(d, seg(0, optUriPath, "devices")...)
	d = append(d, seg(optUriPath, optUriPath, device)...)
	d = append(d, seg(optUriPath, optUriPath, "env")...)
	d = append(d, 0x11, 50, payloadMarker) // Content-Format (delta 1, 1 byte) application/json
	return append(d, payload...)
}

// rawClient is a lean device: its own socket, one confirmable POST in
// flight, matching the answer on message id, retransmitting after 1s.
func rawClient(addr *net.UDPAddr, device string, payload []byte, next *atomic.Int64, n int64) error {
	conn, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	req := rawPost(device, payload)
	resp := make([]byte, 512)
	mid := uint16(0)
	for next.Add(1) <= n {
		mid++
		req[2], req[3] = byte(mid>>8), byte(mid)
		if err := exchangeRaw(conn, req, resp, mid); err != nil {
			return err
		}
	}
	return nil
}

// exchangeRaw sends req (message id mid) until the ACK 2.04 with that id
// arrives, skipping late answers to earlier ids.
func exchangeRaw(conn *net.UDPConn, req, resp []byte, mid uint16) error {
	for attempt := 0; attempt < 5; attempt++ {
		if _, err := conn.Write(req); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			k, err := conn.Read(resp)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					break
				}
				return err
			}
			if k < 4 || uint16(resp[2])<<8|uint16(resp[3]) != mid {
				continue
			}
			if resp[0]>>4&3 != typeACK || resp[1] != codeChanged {
				return errors.New("answer is not ACK 2.04")
			}
			return nil
		}
	}
	return errors.New("no answer after 5 attempts")
}

// BenchmarkCoAPConfirmablePost sends confirmable POSTs from many lean
// raw-UDP clients (default 64; COAP_CLIENTS overrides), each with its own
// socket and one request in flight, to the connector, which hands every
// frame to an Uplink before answering 2.04. "fast" is the default
// plain-UDP path (recvmmsg/sendmmsg batches, WithUDPBatch default 16),
// "fast-unbatched" the fast path with WithUDPBatch(1) (one datagram per
// system call, the previous loop), "go-coap" the same connector with
// WithFastPath(false), measured in the same run. Clients and connector
// share the machine.
//
//	go test -run '^$' -bench BenchmarkCoAPConfirmablePost -benchtime 200000x ./connector/coap
func BenchmarkCoAPConfirmablePost(b *testing.B) {
	clients := 64
	if v, err := strconv.Atoi(os.Getenv("COAP_CLIENTS")); err == nil && v > 0 {
		clients = v
	}
	for _, path := range []struct {
		name  string
		fast  bool
		batch int
	}{{"fast", true, 16}, {"fast-unbatched", true, 1}, {"go-coap", false, 16}} {
		b.Run("path="+path.name, func(b *testing.B) {
			up := &countingUplink{}
			c, err := New(WithAddress("127.0.0.1:0"), WithLogger(conntest.QuietLogger()), WithFastPath(path.fast), WithUDPBatch(path.batch))
			if err != nil {
				b.Fatal(err)
			}
			if err := c.Connect(context.Background(), up); err != nil {
				b.Fatal(err)
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = c.Disconnect(ctx)
			}()
			addr := c.Addr().(*net.UDPAddr)
			payload := []byte(`{"t":21.5,"h":40}`)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for i := 0; i < clients; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := rawClient(addr, "dev"+strconv.Itoa(i), payload, &next, int64(b.N)); err != nil {
						b.Error(err)
					}
				}()
			}
			wg.Wait()
			el := time.Since(start)
			b.ReportMetric(float64(up.n.Load())/el.Seconds(), "msg/s")
			if got := up.n.Load(); got != uint64(b.N) {
				b.Fatalf("%d frames for %d requests", got, b.N)
			}
		})
	}
}
