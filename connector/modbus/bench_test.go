package modbus

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

// benchPoints is 250 scattered points for one device: 100 holding
// registers at stride 2, 100 input registers at stride 3, 50 coils at
// stride 4.
func benchPoints() []Range {
	var rs []Range
	for i := uint16(0); i < 100; i++ {
		rs = append(rs, Range{HoldingRegisters, i * 2, 1}, Range{InputRegisters, i * 3, 1})
	}
	for i := uint16(0); i < 50; i++ {
		rs = append(rs, Range{Coils, i * 4, 1})
	}
	return rs
}

// BenchmarkModbusPollCycle polls 1,000 points spread over 4 devices (4
// pymodbus servers) per iteration, with and without coalescing, and
// reports read requests per cycle; ns/op is the cycle time (the 4 devices
// are polled in parallel, as the connector does).
//
//	go test -run '^$' -bench BenchmarkModbusPollCycle ./connector/modbus
func BenchmarkModbusPollCycle(b *testing.B) {
	var addrs []string
	for i := 0; i < 4; i++ {
		addrs = append(addrs, startPymodbusSized(b, 400))
	}
	for _, tc := range []struct {
		name     string
		coalesce bool
	}{{"coalesced", true}, {"plain", false}} {
		b.Run(tc.name, func(b *testing.B) {
			var opts []Option
			for i, a := range addrs {
				opts = append(opts, WithDevice(Device{Name: string(rune('a' + i)), Address: a, Ranges: benchPoints()}))
			}
			c, err := New(append(opts, WithCoalescing(tc.coalesce, 16), WithRetries(0), WithLogger(quietLogger()))...)
			if err != nil {
				b.Fatal(err)
			}
			var runs []*deviceRun
			var clients []client
			requests := 0
			for _, d := range c.devices {
				cl, err := d.open()
				if err != nil {
					b.Fatal(err)
				}
				defer cl.Close()
				runs, clients = append(runs, d), append(clients, cl)
				requests += len(d.blocks)
			}
			up := countUplink{}
			ctx := context.Background()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				var wg sync.WaitGroup
				for j, d := range runs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := d.cycle(ctx, clients[j], up, 0, false); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
			}
			b.ReportMetric(float64(requests), "requests/cycle")
			b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/cycle")
			if st := c.Stats(); st.Total.Errors > 0 || st.Total.Frames != uint64(requests*b.N) {
				b.Fatalf("stats %+v, want %d frames and no errors", st.Total, requests*b.N)
			}
		})
	}
}

type countUplink struct{}

func (countUplink) Deliver(_ context.Context, f *gateway.Frame) error { f.Release(); return nil }
