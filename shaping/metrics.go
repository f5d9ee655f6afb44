package shaping

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// RegisterMetrics implements gateway.MetricsSource: per class and
// direction, the packets, bytes and drops the BPF programs counted, read
// from their per-CPU maps at collection time (class "other" counts the
// unclassified packets). A failed map read skips that collection.
func (s *Shaper) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	packets, e1 := m.Int64ObservableCounter("gateway.shaping.packets",
		metric.WithDescription("Packets the shaper classified, by class and direction (egress, ingress)."), metric.WithUnit("{packet}"))
	bytes, e2 := m.Int64ObservableCounter("gateway.shaping.bytes",
		metric.WithDescription("Bytes the shaper classified, by class and direction."), metric.WithUnit("By"))
	drops, e3 := m.Int64ObservableCounter("gateway.shaping.drops",
		metric.WithDescription("Packets the shaper dropped, by class and direction."), metric.WithUnit("{packet}"))
	if err := errors.Join(e1, e2, e3); err != nil {
		return nil, err
	}
	opts := map[[2]string]metric.ObserveOption{}
	opt := func(class, dir string) metric.ObserveOption {
		k := [2]string{class, dir}
		if o, ok := opts[k]; ok {
			return o
		}
		kv := append(append([]attribute.KeyValue(nil), label...), attribute.String("class", class), attribute.String("direction", dir))
		o := metric.WithAttributes(kv...)
		opts[k] = o
		return o
	}
	observe := func(o metric.Observer, class, dir string, c Counter) {
		a := opt(class, dir)
		o.ObserveInt64(packets, int64(c.Packets), a)
		o.ObserveInt64(bytes, int64(c.Bytes), a)
		o.ObserveInt64(drops, int64(c.Drops), a)
	}
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st, err := s.Stats()
		if err != nil {
			return nil // not attached (or closed): nothing to report
		}
		for _, c := range st.Classes {
			observe(o, c.Name, "egress", c.Egress)
			observe(o, c.Name, "ingress", c.Ingress)
		}
		observe(o, "other", "egress", st.Other[Egress])
		observe(o, "other", "ingress", st.Other[Ingress])
		return nil
	}, packets, bytes, drops)
}
