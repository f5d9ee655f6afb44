package connstats

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// RegisterMetrics registers observable instruments over the table's
// totals (never per device: a device id is not a label), labelled with
// label (connector=NAME). Connectors implement gateway.MetricsSource by
// calling it.
func (t *Table) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	frames, e1 := m.Int64ObservableCounter("gateway.connector.frames",
		metric.WithDescription("Frames a connector accepted from its devices."), metric.WithUnit("{frame}"))
	bytes, e2 := m.Int64ObservableCounter("gateway.connector.received",
		metric.WithDescription("Payload bytes a connector accepted from its devices."), metric.WithUnit("By"))
	problems, e3 := m.Int64ObservableCounter("gateway.connector.problems",
		metric.WithDescription("Connector problems by reason: error, malformed, denied, oversized, exception."),
		metric.WithUnit("{event}"))
	sessions, e4 := m.Int64ObservableCounter("gateway.connector.sessions",
		metric.WithDescription("Device sessions or connections (re-)established."), metric.WithUnit("{session}"))
	latency, e5 := m.Float64ObservableGauge("gateway.connector.request.latency.mean",
		metric.WithDescription("Mean duration of a connector's requests or deliveries since start."), metric.WithUnit("s"))
	if err := errors.Join(e1, e2, e3, e4, e5); err != nil {
		return nil, err
	}
	base := attribute.NewSet(label...)
	a := metric.WithAttributeSet(base)
	reason := func(r string) metric.ObserveOption {
		kv := append(base.ToSlice(), attribute.String("reason", r))
		return metric.WithAttributes(kv...)
	}
	rErr, rMal, rDen, rOver, rExc := reason("error"), reason("malformed"), reason("denied"), reason("oversized"), reason("exception")
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c := &t.Total
		o.ObserveInt64(frames, int64(c.frames.Load()), a)
		o.ObserveInt64(bytes, int64(c.bytes.Load()), a)
		o.ObserveInt64(problems, int64(c.errors.Load()), rErr)
		o.ObserveInt64(problems, int64(c.malformed.Load()), rMal)
		o.ObserveInt64(problems, int64(c.denied.Load()), rDen)
		o.ObserveInt64(problems, int64(c.oversized.Load()), rOver)
		o.ObserveInt64(problems, int64(c.exceptions.Load()), rExc)
		o.ObserveInt64(sessions, int64(c.reconnects.Load()), a)
		if n := c.latencyN.Load(); n > 0 {
			o.ObserveFloat64(latency, float64(c.latencySum.Load())/float64(n)/1e9, a)
		}
		return nil
	}, frames, bytes, problems, sessions, latency)
}
