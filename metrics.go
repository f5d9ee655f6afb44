package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// MeterName is the instrumentation scope of the gateway's own instruments
// and of the instruments components register through MetricsSource.
const MeterName = "github.com/iotgw/gateway"

// MetricsSource is implemented by components (connectors, sinks, the
// Store, the Drainer, the Shaper) that publish instruments of their own.
// The gateway calls RegisterMetrics when the component starts, with the
// component's label (connector=NAME or sink=NAME; none for the Store,
// Drainer and Shaper), and unregisters what it returned when the component
// stops or is replaced by a reload.
//
// Conventions, so that a scrape stays cheap and bounded:
//   - hot-path counters stay atomics; the component reads them in an
//     observable instrument's callback at collection time;
//   - every instrument has a description and a unit;
//   - labels are bounded: connector, sink, codec, rule, class, state and
//     fixed enumerations (reason, kind, plane). A device id never becomes a
//     label: per-device detail belongs in traces and logs.
type MetricsSource interface {
	RegisterMetrics(m metric.Meter, component ...attribute.KeyValue) (metric.Registration, error)
}

// WithMeterProvider makes the gateway record its metrics with mp, and hands
// mp's meter to every component that is a MetricsSource. Default: a no-op
// provider, so a host that does not ask for metrics pays nothing beyond a
// few atomic counters it already keeps, and links no OpenTelemetry SDK.
// The observe package builds a provider with a Prometheus endpoint.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(s *settings) error {
		if mp == nil {
			return errors.New("meter provider is nil")
		}
		s.meterProvider = mp
		return nil
	}
}

// gatewayMetrics holds the gateway's instruments.
type gatewayMetrics struct {
	meter      metric.Meter
	pubLatency metric.Float64Histogram
	reg        metric.Registration

	mu   sync.Mutex
	regs map[string]componentReg // component registrations by "kind/name"
}

type componentReg struct {
	owner any // the connRun or sinkRun that registered
	reg   metric.Registration
}

// Attribute keys of the gateway's instruments.
const (
	attrConnector = attribute.Key("connector")
	attrSink      = attribute.Key("sink")
	attrPlane     = attribute.Key("plane")
	attrReason    = attribute.Key("reason")
	attrQueue     = attribute.Key("queue")
	attrState     = attribute.Key("state")
)

var (
	planeIngress = metric.WithAttributes(attrPlane.String("ingress"))
	planeDecode  = metric.WithAttributes(attrPlane.String("decode"))
	planeRoute   = metric.WithAttributes(attrPlane.String("route"))
	planePublish = metric.WithAttributes(attrPlane.String("publish"))
	queueIngress = metric.WithAttributes(attrQueue.String("ingress"))
)

// latencyBuckets are the publish latency histogram's bounds in seconds:
// from a local broker's sub-millisecond PUBACK to a congested uplink.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func (g *Gateway) initMetrics() error {
	mp := g.s.meterProvider
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := &gatewayMetrics{meter: mp.Meter(MeterName), regs: map[string]componentReg{}}
	g.metrics = m
	var err error
	m.pubLatency, err = m.meter.Float64Histogram("gateway.publish.latency",
		metric.WithDescription("Time from a frame's arrival to its sink's acknowledgement (PUBACK for MQTT at QoS 1), one observation per acknowledged batch: its oldest message."),
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(latencyBuckets...))
	if err != nil {
		return err
	}
	mt := m.meter
	throughput, err1 := mt.Int64ObservableCounter("gateway.plane.messages",
		metric.WithDescription("Frames or messages that passed each plane: ingress (accepted), decode (decoded), route (routed to at least one sink), publish (acknowledged by a sink)."),
		metric.WithUnit("{message}"))
	drops, err2 := mt.Int64ObservableCounter("gateway.drops",
		metric.WithDescription("Frames or messages dropped, by reason: ingress_full, sink_full (or sink removed), unrouted, dead_letter_dropped, dead_letter_error, refused_malformed, shutdown."),
		metric.WithUnit("{message}"))
	decodeErrs, err3 := mt.Int64ObservableCounter("gateway.decode.errors",
		metric.WithDescription("Frames their codec could not decode."), metric.WithUnit("{frame}"))
	depth, err4 := mt.Int64ObservableGauge("gateway.queue.depth",
		metric.WithDescription("Items waiting in a bounded queue: the ingress queue (all shards) or one sink's queue."),
		metric.WithUnit("{message}"))
	sinkOut, err5 := mt.Int64ObservableCounter("gateway.sink.published",
		metric.WithDescription("Messages a sink acknowledged."), metric.WithUnit("{message}"))
	sinkErr, err6 := mt.Int64ObservableCounter("gateway.sink.errors",
		metric.WithDescription("Failed publish attempts of a sink (each retry counts)."), metric.WithUnit("{attempt}"))
	up, err7 := mt.Int64ObservableGauge("gateway.component.up",
		metric.WithDescription("1 when a connector is connected or a sink's last publish succeeded, else 0."),
		metric.WithUnit("{up}"))
	deadLetters, err8 := mt.Int64ObservableCounter("gateway.dead_letters",
		metric.WithDescription("Undecodable frames kept as dead letters."), metric.WithUnit("{frame}"))
	store, err9 := mt.Int64ObservableCounter("gateway.store.transfers",
		metric.WithDescription("Messages spilled to the Store (state=spilled) and replayed from it (state=replayed)."),
		metric.WithUnit("{message}"))
	reloads, err10 := mt.Int64ObservableCounter("gateway.reloads",
		metric.WithDescription("Configuration reloads, by state: ok or failed."), metric.WithUnit("{reload}"))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8, err9, err10); err != nil {
		return err
	}
	m.reg, err = mt.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		var in, drop, dec, routed, unrouted uint64
		qd := 0
		for _, sh := range g.shards {
			in += sh.framesIn.Load()
			drop += sh.framesDrop.Load()
			dec += sh.decodeErrors.Load()
			routed += sh.routed.Load()
			unrouted += sh.unrouted.Load()
			qd += len(sh.frames)
		}
		o.ObserveInt64(throughput, int64(in), planeIngress)
		decoded := int64(in) - int64(dec)
		if decoded < 0 {
			decoded = 0
		}
		o.ObserveInt64(throughput, decoded, planeDecode)
		o.ObserveInt64(throughput, int64(routed), planeRoute)
		o.ObserveInt64(decodeErrs, int64(dec))
		o.ObserveInt64(depth, int64(qd), queueIngress)
		var published, sinkDropped uint64
		g.mu.Lock()
		for _, sr := range g.retired {
			published += sr.out.Load()
			sinkDropped += sr.dropped.Load()
		}
		for _, sr := range g.sinks {
			a := metric.WithAttributeSet(sr.attrs)
			out := sr.out.Load()
			published += out
			sinkDropped += sr.dropped.Load()
			o.ObserveInt64(sinkOut, int64(out), a)
			o.ObserveInt64(sinkErr, int64(sr.errs.Load()), a)
			o.ObserveInt64(depth, int64(len(sr.q)), a)
			o.ObserveInt64(up, b2i(sr.healthy.Load()), a)
		}
		for _, cr := range g.connectors {
			o.ObserveInt64(up, b2i(cr.up.Load()), metric.WithAttributes(attrConnector.String(cr.nc.name)))
		}
		g.mu.Unlock()
		o.ObserveInt64(throughput, int64(published), planePublish)
		for _, d := range [...]struct {
			reason string
			n      uint64
		}{
			{"ingress_full", drop}, {"sink_full", sinkDropped}, {"unrouted", unrouted},
			{"dead_letter_dropped", g.stats.deadLettersDropped.Load()},
			{"dead_letter_error", g.stats.deadLetterErrors.Load()},
			{"refused_malformed", g.stats.malformedRefused.Load()},
			{"shutdown", g.stats.lostAtShutdown.Load()},
		} {
			o.ObserveInt64(drops, int64(d.n), metric.WithAttributes(attrReason.String(d.reason)))
		}
		o.ObserveInt64(deadLetters, int64(g.stats.deadLetters.Load()))
		o.ObserveInt64(store, int64(g.stats.spilled.Load()), metric.WithAttributes(attrState.String("spilled")))
		o.ObserveInt64(store, int64(g.stats.replayed.Load()), metric.WithAttributes(attrState.String("replayed")))
		ok := g.stats.reloads.Load() - min(g.stats.reloads.Load(), g.stats.reloadErrors.Load())
		o.ObserveInt64(reloads, int64(ok), metric.WithAttributes(attrState.String("ok")))
		o.ObserveInt64(reloads, int64(g.stats.reloadErrors.Load()), metric.WithAttributes(attrState.String("failed")))
		return nil
	}, throughput, drops, decodeErrs, depth, sinkOut, sinkErr, up, deadLetters, store, reloads)
	return err
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// registerComponent hands the meter to v when it is a MetricsSource, under
// key, for owner (replacing what was registered under key before).
func (g *Gateway) registerComponent(key string, owner, v any, label ...attribute.KeyValue) {
	m := g.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.regs[key]; ok {
		_ = old.reg.Unregister()
		delete(m.regs, key)
	}
	src, ok := v.(MetricsSource)
	if !ok {
		return
	}
	reg, err := src.RegisterMetrics(m.meter, label...)
	if err != nil {
		g.log.Warn("component metrics not registered", "component", key, "err", err)
		return
	}
	if reg != nil {
		m.regs[key] = componentReg{owner: owner, reg: reg}
	}
}

// unregisterComponent drops key's registration if owner made it: a
// component that was replaced under the same name keeps its successor's.
func (g *Gateway) unregisterComponent(key string, owner any) {
	m := g.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.regs[key]; ok && old.owner == owner {
		_ = old.reg.Unregister()
		delete(m.regs, key)
	}
}

// closeMetrics unregisters every callback, so a stopped gateway is not
// kept alive (nor scraped) by the provider.
func (g *Gateway) closeMetrics() {
	m := g.metrics
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, r := range m.regs {
		_ = r.reg.Unregister()
		delete(m.regs, k)
	}
	if m.reg != nil {
		_ = m.reg.Unregister()
		m.reg = nil
	}
}

// recordPublished records the publish latency of an acknowledged batch:
// one observation per batch, the latency of its oldest message (the
// batch's worst), so the cost stays one SDK call per batch, not per
// message, and the histogram's count is batches.
func (sr *sinkRun) recordPublished(batch []*Message) {
	h := sr.g.metrics.pubLatency
	if !h.Enabled(context.Background()) {
		return
	}
	var oldest int64
	for _, m := range batch {
		if m.arrived != 0 && (oldest == 0 || m.arrived < oldest) {
			oldest = m.arrived
		}
	}
	if oldest != 0 {
		h.Record(context.Background(), float64(time.Now().UnixNano()-oldest)/1e9, sr.recOpt...)
	}
}
