package httpc

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
)

// TestConcurrentRequestsShareBatches: requests that arrive while the
// gateway has not accepted an earlier one are handed over together in
// the next batch (in edge mode one Store commit), and each is answered
// 202 once accepted.
func TestConcurrentRequestsShareBatches(t *testing.T) {
	up := conntest.NewBatchCollector()
	release := up.Hold()
	defer release()
	c, base := start(t, up)
	const n = 10
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(base+"/v1/devices/d/t", "text/plain", strings.NewReader(fmt.Sprint(i)))
			if err != nil {
				t.Error(err)
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	conntest.Eventually(t, 10*time.Second, "all requests handed over while the first batch waits", func() bool {
		c.mu.Lock()
		p := c.pipe
		c.mu.Unlock()
		return p != nil && p.InFlight() == n
	})
	release()
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != http.StatusAccepted {
			t.Fatalf("status %d, want 202", code)
		}
	}
	if bs := up.Batches(); len(bs) > 2 {
		t.Fatalf("batches %v: requests waiting together were not delivered together", bs)
	}
	if up.Len() != n {
		t.Fatalf("%d frames, want %d", up.Len(), n)
	}
}
