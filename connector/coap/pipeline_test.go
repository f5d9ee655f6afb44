package coap

import (
	"fmt"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
)

// TestConcurrentRequestsShareBatches: confirmable POSTs from several
// devices that arrive while the gateway has not accepted an earlier one
// are handed over together in the next batch (in edge mode one Store
// commit), and each is answered 2.04 once accepted.
func TestConcurrentRequestsShareBatches(t *testing.T) {
	up := conntest.NewBatchCollector()
	release := up.Hold()
	defer release()
	const n = 4
	// One datagram per read: this test is about requests from several
	// readers sharing the pipeline. A batched read (WithUDPBatch) still
	// hands its datagrams over one after another.
	c, addr := start(t, up, WithReaders(n), WithUDPBatch(1))
	answers := make(chan []byte, n)
	for i := range n {
		conn := rawPeer(t, addr)
		go func() {
			answers <- roundTrip(t, conn, rawPost(fmt.Sprint("d", i), []byte(fmt.Sprint(i))), 10*time.Second)
		}()
	}
	conntest.Eventually(t, 10*time.Second, "all requests handed over while the first batch waits", func() bool {
		c.mu.Lock()
		p := c.pipe
		c.mu.Unlock()
		return p != nil && p.InFlight() == n
	})
	release()
	for range n {
		if a := <-answers; len(a) < 2 || a[1] != codeChanged {
			t.Fatalf("answer % x, want 2.04", a)
		}
	}
	if bs := up.Batches(); len(bs) > 2 {
		t.Fatalf("batches %v: requests waiting together were not delivered together", bs)
	}
	if up.Len() != n {
		t.Fatalf("%d frames, want %d", up.Len(), n)
	}
}
