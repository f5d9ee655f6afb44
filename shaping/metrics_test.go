package shaping

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// checkShapingMetrics: the shaper's instruments, read from the BPF maps at
// collection time, report class's ingress packets and drops.
func checkShapingMetrics(t *testing.T, s *Shaper, class string, packets, drops int64) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	reg, err := s.RegisterMetrics(mp.Meter("t"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Unregister()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			d, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, p := range d.DataPoints {
				c, _ := p.Attributes.Value("class")
				dir, _ := p.Attributes.Value("direction")
				if c.AsString() == class && dir.AsString() == "ingress" {
					got[m.Name] = p.Value
				}
			}
		}
	}
	if got["gateway.shaping.packets"] != packets || got["gateway.shaping.drops"] != drops || got["gateway.shaping.bytes"] != packets*1042 {
		t.Errorf("metrics %v, want %d packets (%d bytes), %d drops", got, packets, packets*1042, drops)
	}
}
