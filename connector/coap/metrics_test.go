package coap

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// checkDTLSMetrics: the connector's instruments report what DTLSStats
// counts, labelled by kind and reason.
func checkDTLSMetrics(t *testing.T, c *Connector) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	reg, err := c.RegisterMetrics(mp.Meter("t"), attribute.String("connector", "coaps"))
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
			if d, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, p := range d.DataPoints {
					k, _ := p.Attributes.Value("kind")
					r, _ := p.Attributes.Value("reason")
					got[m.Name+"/"+k.AsString()+r.AsString()] = p.Value
				}
			}
		}
	}
	st, _ := c.DTLSStats()
	if got["gateway.dtls.handshakes/psk"] != int64(st.HandshakesPSK) || got["gateway.dtls.handshakes/psk"] < 4 ||
		got["gateway.dtls.handshake.failures/decrypt"] != int64(st.DecryptFailures) || got["gateway.connector.frames/"] != 2 {
		t.Fatalf("metrics %v, stats %+v", got, st)
	}
}
