package coap

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
)

// RegisterMetrics implements gateway.MetricsSource: the connector's totals
// and, with WithDTLS, the DTLS listener's handshakes (kind full, psk or
// resumed; failures by reason) and live associations, read at collection
// time.
func (c *Connector) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	base, err := c.stats.RegisterMetrics(m, label...)
	if err != nil {
		return nil, err
	}
	hs, e1 := m.Int64ObservableCounter("gateway.dtls.handshakes",
		metric.WithDescription("Completed DTLS handshakes by kind: full (certificate), psk (full PSK) or resumed (abbreviated, from the session cache)."),
		metric.WithUnit("{handshake}"))
	failed, e2 := m.Int64ObservableCounter("gateway.dtls.handshake.failures",
		metric.WithDescription("Failed DTLS handshakes by reason: failure (credentials, alerts, protocol), timeout, decrypt (wrong PSK)."),
		metric.WithUnit("{handshake}"))
	assoc, e3 := m.Int64ObservableGauge("gateway.dtls.associations",
		metric.WithDescription("Live DTLS associations (handshaking or established)."), metric.WithUnit("{association}"))
	if err := errors.Join(e1, e2, e3); err != nil {
		_ = base.Unregister()
		return nil, err
	}
	with := func(k, v string) metric.ObserveOption {
		return metric.WithAttributes(append(append([]attribute.KeyValue(nil), label...), attribute.String(k, v))...)
	}
	full, psk, resumed := with("kind", "full"), with("kind", "psk"), with("kind", "resumed")
	fail, timeout, decrypt := with("reason", "failure"), with("reason", "timeout"), with("reason", "decrypt")
	plain := metric.WithAttributes(label...)
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st, ok := c.DTLSStats()
		if !ok {
			return nil
		}
		o.ObserveInt64(hs, int64(st.HandshakesFull), full)
		o.ObserveInt64(hs, int64(st.HandshakesPSK), psk)
		o.ObserveInt64(hs, int64(st.HandshakesResumed), resumed)
		o.ObserveInt64(failed, int64(st.HandshakeFailures), fail)
		o.ObserveInt64(failed, int64(st.HandshakeTimeouts), timeout)
		o.ObserveInt64(failed, int64(st.DecryptFailures), decrypt)
		o.ObserveInt64(assoc, int64(st.Associations), plain)
		return nil
	}, hs, failed, assoc)
	if err != nil {
		_ = base.Unregister()
		return nil, err
	}
	return both{a: base, b: reg}, nil
}

// both unregisters two registrations.
type both struct {
	embedded.Registration
	a, b metric.Registration
}

func (b both) Unregister() error {
	return errors.Join(b.a.Unregister(), b.b.Unregister())
}
