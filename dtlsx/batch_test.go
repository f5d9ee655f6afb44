package dtlsx

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"
)

// TestBatchedReaderManyClients: PSK clients handshake at once and echo
// records through the listener; every datagram reaches its own
// association (address per datagram), on the recvmmsg path and on the
// one-datagram path.
func TestBatchedReaderManyClients(t *testing.T) {
	var tbl PSKTable
	const clients = 24
	for i := range clients {
		if err := tbl.Set([]byte("dev-"+strconv.Itoa(i)), []byte("0123456789abcdef")); err != nil {
			t.Fatal(err)
		}
	}
	for _, batch := range []int{16, 1} {
		t.Run("udp_batch="+strconv.Itoa(batch), func(t *testing.T) {
			l := listen(t, WithPSK(&tbl), WithSourceRate(0, 0), WithUDPBatch(batch))
			serveEcho(t, l)
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := Dial(ctxT(t, 10*time.Second), "udp", l.Addr().String(),
						WithClientPSK([]byte("dev-"+strconv.Itoa(i)), []byte("0123456789abcdef")))
					if err != nil {
						errs <- fmt.Errorf("client %d: %w", i, err)
						return
					}
					defer c.Close()
					buf := make([]byte, 256)
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					for k := range 5 {
						msg := fmt.Sprintf("client %d record %d", i, k)
						if _, err := c.Write([]byte(msg)); err != nil {
							errs <- fmt.Errorf("client %d: %w", i, err)
							return
						}
						n, err := c.Read(buf)
						if err != nil || string(buf[:n]) != msg {
							errs <- fmt.Errorf("client %d: echo %q, %v; want %q", i, buf[:n], err, msg)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if st := l.Stats(); st.HandshakesPSK != clients || st.Malformed != 0 {
				t.Fatalf("stats %+v; want %d PSK handshakes, nothing malformed", st, clients)
			}
		})
	}
}

// TestUDPBatchOptionBounds: WithUDPBatch takes 1..1024.
func TestUDPBatchOptionBounds(t *testing.T) {
	for _, n := range []int{0, 1025} {
		if _, err := buildSettings([]Option{WithUDPBatch(n)}); err == nil {
			t.Errorf("WithUDPBatch(%d) accepted", n)
		}
	}
}
