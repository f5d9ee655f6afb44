package coap

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp"
)

type countingUplink struct{ n atomic.Uint64 }

func (u *countingUplink) Deliver(_ context.Context, f *gateway.Frame) error {
	f.Release()
	u.n.Add(1)
	return nil
}

// BenchmarkCoAPConfirmablePost sends confirmable POSTs from 64 clients
// (each its own UDP socket, one request in flight each) to the
// connector, which hands every frame to an Uplink before answering 2.04.
// Clients and connector share the machine, so msg/s is a lower bound
// for the connector alone.
//
//	go test -run '^$' -bench BenchmarkCoAPConfirmablePost -benchtime 200000x ./connector/coap
func BenchmarkCoAPConfirmablePost(b *testing.B) {
	up := &countingUplink{}
	c, err := New(WithAddress("127.0.0.1:0"), WithLogger(conntest.QuietLogger()))
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
	clients := 64
	if v, err := strconv.Atoi(os.Getenv("COAP_CLIENTS")); err == nil && v > 0 {
		clients = v
	}
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
			conn, err := udp.Dial(c.Addr().String())
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close()
			path := "/devices/dev" + strconv.Itoa(i) + "/env"
			for next.Add(1) <= int64(b.N) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := conn.Post(ctx, path, message.AppJSON, bytes.NewReader(payload))
				cancel()
				if err != nil {
					b.Error(err)
					return
				}
				if resp.Code() != codes.Changed {
					b.Errorf("answer %v", resp.Code())
				}
				conn.ReleaseMessage(resp)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.ReportMetric(float64(up.n.Load())/el.Seconds(), "msg/s")
	if got := up.n.Load(); got != uint64(b.N) {
		b.Fatalf("%d frames for %d requests", got, b.N)
	}
}
