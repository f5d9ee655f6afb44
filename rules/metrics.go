package rules

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// RegisterMetrics implements gateway.MetricsSource: per rule, the messages
// it matched and applied to (hits) and its evaluation errors, plus the
// messages the set dropped. Rule names come from the configuration, so
// the label is bounded.
func (s *Set) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	hits, e1 := m.Int64ObservableCounter("gateway.rule.hits",
		metric.WithDescription("Messages a rule matched and applied to."), metric.WithUnit("{message}"))
	errs, e2 := m.Int64ObservableCounter("gateway.rule.errors",
		metric.WithDescription("Evaluation errors of a rule (the message is not routed by it)."), metric.WithUnit("{error}"))
	if err := errors.Join(e1, e2); err != nil {
		return nil, err
	}
	opts := make([]metric.ObserveOption, len(s.rules))
	for i := range s.rules {
		kv := append(append([]attribute.KeyValue(nil), label...), attribute.String("rule", s.rules[i].Name))
		opts[i] = metric.WithAttributes(kv...)
	}
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for i := range s.rules {
			o.ObserveInt64(hits, int64(s.rules[i].hits.Load()), opts[i])
			o.ObserveInt64(errs, int64(s.rules[i].errs.Load()), opts[i])
		}
		return nil
	}, hits, errs)
}
