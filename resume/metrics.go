package resume

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/embedded"
)

// RegisterMetrics implements gateway.MetricsSource: the store's depth
// (records and bytes), held records, evictions and the age of its oldest
// record, read at collection time (the age with one indexed query).
func (s *SQLiteStore) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	depth, e1 := m.Int64ObservableGauge("gateway.store.records",
		metric.WithDescription("Records waiting in the store-and-forward queue."), metric.WithUnit("{record}"))
	size, e2 := m.Int64ObservableGauge("gateway.store.size",
		metric.WithDescription("Payload bytes of the records waiting in the store."), metric.WithUnit("By"))
	held, e3 := m.Int64ObservableGauge("gateway.store.held",
		metric.WithDescription("Records handed out for replay and not yet acknowledged or released."), metric.WithUnit("{record}"))
	evicted, e4 := m.Int64ObservableCounter("gateway.store.evicted",
		metric.WithDescription("Records dropped from a full store by the drop-oldest policy."), metric.WithUnit("{record}"))
	age, e5 := m.Float64ObservableGauge("gateway.store.oldest.age",
		metric.WithDescription("Age of the oldest record in the store (0 when empty)."), metric.WithUnit("s"))
	if err := errors.Join(e1, e2, e3, e4, e5); err != nil {
		return nil, err
	}
	a := metric.WithAttributes(label...)
	return m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		st := s.Stats()
		o.ObserveInt64(depth, st.Rows, a)
		o.ObserveInt64(size, st.Bytes, a)
		o.ObserveInt64(held, int64(st.Held), a)
		o.ObserveInt64(evicted, st.Evicted, a)
		var oldest float64
		if st.Rows > 0 {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			var enq int64
			err := s.db.QueryRowContext(qctx, "SELECT enqueued FROM records ORDER BY seq LIMIT 1").Scan(&enq)
			cancel()
			if err == nil && enq > 0 {
				oldest = max(0, time.Since(time.Unix(0, enq)).Seconds())
			}
		}
		o.ObserveFloat64(age, oldest, a)
		return nil
	}, depth, size, held, evicted, age)
}

// RegisterMetrics implements gateway.MetricsSource: the store's
// instruments, the drain state (1 for the current state, 0 for the
// others), the drain counters and, per probe, its RTT and jitter.
func (e *EdgeStore) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	store, err := e.SQLiteStore.RegisterMetrics(m, label...)
	if err != nil {
		return nil, err
	}
	drain, err := e.drainer.registerMetrics(m, e.monitor, label...)
	if err != nil {
		_ = store.Unregister()
		return nil, err
	}
	return joined{a: store, b: drain}, nil
}

// RegisterMetrics implements gateway.MetricsSource for a Drainer used on
// its own: the drain state and counters.
func (d *Drainer) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	return d.registerMetrics(m, nil, label...)
}

func (d *Drainer) registerMetrics(m metric.Meter, mon *Monitor, label ...attribute.KeyValue) (metric.Registration, error) {
	state, e1 := m.Int64ObservableGauge("gateway.drain.state",
		metric.WithDescription("1 for the uplink state the drain machine is in (online, degraded, offline, recovering, draining), 0 for the others."),
		metric.WithUnit("{state}"))
	drained, e2 := m.Int64ObservableCounter("gateway.drain.records",
		metric.WithDescription("Stored records by drain outcome: sent, failed, acked, orphaned (sink gone), refused (live messages refused while offline)."),
		metric.WithUnit("{record}"))
	rtt, e3 := m.Float64ObservableGauge("gateway.probe.rtt",
		metric.WithDescription("Smoothed round-trip time of an uplink probe (as TCP's SRTT)."), metric.WithUnit("s"))
	jitter, e4 := m.Float64ObservableGauge("gateway.probe.jitter",
		metric.WithDescription("Jitter of an uplink probe's round-trip time (mean deviation, RFC 3550)."), metric.WithUnit("s"))
	probeUp, e5 := m.Int64ObservableGauge("gateway.probe.up",
		metric.WithDescription("1 when an uplink probe's last attempt succeeded, else 0."), metric.WithUnit("{up}"))
	if err := errors.Join(e1, e2, e3, e4, e5); err != nil {
		return nil, err
	}
	with := func(k, v string) metric.ObserveOption {
		return metric.WithAttributes(append(append([]attribute.KeyValue(nil), label...), attribute.String(k, v))...)
	}
	var states [numStates]metric.ObserveOption
	for s := range states {
		states[s] = with("state", State(s).String())
	}
	outcomes := map[string]metric.ObserveOption{}
	for _, k := range []string{"sent", "failed", "acked", "orphaned", "refused"} {
		outcomes[k] = with("state", k)
	}
	return m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if mc := d.cfg.Machine; mc != nil {
			cur, _ := mc.State()
			for s := range states {
				v := int64(0)
				if State(s) == cur {
					v = 1
				}
				o.ObserveInt64(state, v, states[s])
			}
		}
		st := d.Stats()
		o.ObserveInt64(drained, int64(st.Sent), outcomes["sent"])
		o.ObserveInt64(drained, int64(st.Failed), outcomes["failed"])
		o.ObserveInt64(drained, int64(st.Acked), outcomes["acked"])
		o.ObserveInt64(drained, int64(st.Orphaned), outcomes["orphaned"])
		o.ObserveInt64(drained, int64(st.Refused), outcomes["refused"])
		if mon != nil {
			for _, p := range mon.Stats() {
				a := with("probe", p.Name)
				o.ObserveFloat64(rtt, p.MeanRTT.Seconds(), a)
				o.ObserveFloat64(jitter, p.Jitter.Seconds(), a)
				up := int64(0)
				if p.Up {
					up = 1
				}
				o.ObserveInt64(probeUp, up, a)
			}
		}
		return nil
	}, state, drained, rtt, jitter, probeUp)
}

// joined unregisters two registrations.
type joined struct {
	embedded.Registration
	a, b metric.Registration
}

func (j joined) Unregister() error { return errors.Join(j.a.Unregister(), j.b.Unregister()) }
