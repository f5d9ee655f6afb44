package gateway

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing. The gateway depends on the OpenTelemetry trace API only; a host
// passes a TracerProvider with WithTracerProvider (package observe builds
// one with the SDK, an OTLP/HTTP exporter and an outage queue). Without
// one nothing is traced and the API costs nothing.
//
// Every frame gets a trace context when it is delivered: the device's
// (Frame.Trace, filled by the connector from the protocol) is continued
// with a new span id for the gateway, otherwise a new trace starts at the
// connector. Message.Trace holds it; logs about the message carry its
// trace_id and span_id, and the MQTT sink writes it into the upstream
// envelope. Edge mode stores it with the frame, so a message replayed
// after an outage or a crash continues its original trace.
//
// Sampling is decided before any span exists, so messages nobody keeps
// never call the tracer and allocate nothing for tracing:
//
//   - Head: parent-based. A device's sampled flag is honoured either way;
//     a trace that starts at the gateway is sampled with the ratio of
//     WithTraceSampling, decided from its trace id.
//   - Tail: when a message finishes (published, or failed, dropped,
//     retried, dead-lettered), it is kept although the head did not pick
//     it if its outcome is one of those failures or it took longer than the
//     latency threshold from receipt to the broker's acknowledgement.
//
// The gateway notes when each step started and ended in plain fields of
// the message and emits the spans of a kept message at that moment, with
// those timestamps: "receive" (from the read until the decode plane takes
// the message off the ingress queue; its span id is Message.Trace.SpanID), its children "store" (edge mode: the
// write-ahead commit), "decode" and "route" (both cover the batch the
// message was processed in; route carries the decision and the number of
// sinks), and one "publish" per sink, from the first attempt to the
// broker's acknowledgement (PUBACK for MQTT), with the attempts and the
// outcome. The tail's memory is the message itself, which the pipeline
// holds anyway; the exporter's queue is bounded (see package observe).
//
// The spans' ids: the receive span must get the id the message carries,
// and a trace that starts at the gateway its trace id. The gateway asks
// for them through the context passed to Tracer.Start (see
// RequestedSpanIDs); package observe's ID generator honours that. Any
// other SDK must be given one that does (observe.IDGenerator), and a
// sampler that samples whatever the gateway asks for (the decision is the
// gateway's), or trace ids of new traces will not match the envelope.

// TraceSampling configures trace sampling (see WithTraceSampling).
type TraceSampling struct {
	// Ratio is the share of the traces starting at the gateway that the
	// head samples, decided from the trace id.
	Ratio float64
	// Tail keeps failed and slow messages the head did not pick.
	Tail bool
	// Latency is the end-to-end time above which the tail keeps a
	// message; 0 keeps failures only.
	Latency time.Duration
	// Slow, when set, replaces Latency: it reports whether a message of
	// connector that took latency from receipt to the broker's
	// acknowledgement is slow (a baseline's band, for example). It is
	// called for every finishing message while tail sampling is on, so it
	// must be cheap and must not block.
	Slow func(connector string, latency time.Duration) bool
}

// DefaultTraceSampling is what a gateway with a TracerProvider uses unless
// told otherwise: 1 % of new traces, tail keep on, latency threshold 1s.
var DefaultTraceSampling = TraceSampling{Ratio: 0.01, Tail: true, Latency: time.Second}

// WithTracerProvider traces messages with tp (see package observe). The
// gateway names its tracer "github.com/iotgw/gateway". Default: none
// (nothing is traced; trace contexts are still assigned, logged and
// written upstream). A no-op provider counts as none.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *settings) error {
		if tp == nil {
			return errors.New("tracer provider is nil")
		}
		if _, ok := tp.(noop.TracerProvider); ok {
			s.tracer, s.recorder = nil, nil
			return nil
		}
		s.tracer = tp.Tracer(tracerName)
		s.recorder, _ = tp.(SpanRecorder)
		return nil
	}
}

// SpanRecorder is implemented by a TracerProvider that takes the spans of
// a finished message in one call (package observe's does: it encodes them
// straight to OTLP). The gateway then records a kept message's spans
// through it instead of starting and ending each through the Tracer, which
// costs the OpenTelemetry API's per-span objects (about ten allocations a
// span). The spans are the same.
type SpanRecorder interface {
	// RecordMessageSpans takes the spans s describes. s is reused after it
	// returns: copy what is kept. It must not block.
	RecordMessageSpans(s *MessageSpans)
}

// MessageSpans describes the spans of one message to a SpanRecorder.
// Times are Unix nanoseconds; a zero start means the span is absent.
type MessageSpans struct {
	TraceID trace.TraceID
	// SpanID is the receive span's id (Message.Trace.SpanID); Parent the
	// device's span, zero when the trace started at the gateway.
	SpanID, Parent trace.SpanID
	State          string
	// Steps reports that receive, store, decode and route are included
	// (once per message; later calls carry another sink's publish only).
	Steps                    bool
	Connector, Device, Topic string
	MessageID                MessageID
	Tail, Replayed           bool
	ReceiveStart, ReceiveEnd int64
	StoreStart, StoreEnd     int64
	DecodeStart, DecodeEnd   int64
	RouteStart, RouteEnd     int64
	RouteDecision            string
	RouteSinks               int
	Sink                     string // "" : no publish span
	PublishStart, PublishEnd int64
	Attempts                 int
	Outcome                  string
	Err                      error
}

var spansPool = sync.Pool{New: func() any { return new(MessageSpans) }}

// recordSpans is emitSpans through a SpanRecorder.
func (g *Gateway) recordSpans(m *Message, sink string, start, end int64, attempts int, o uint32, tail bool, err error) {
	s := spansPool.Get().(*MessageSpans)
	*s = MessageSpans{
		TraceID: m.Trace.TraceID, SpanID: m.Trace.SpanID, Parent: m.tr.parent, State: m.Trace.State,
		Connector: m.Connector, Device: m.Device, Topic: m.Topic, MessageID: m.ID,
		Tail: tail, Replayed: m.tr.replayed,
		Sink: sink, PublishStart: start, PublishEnd: end, Attempts: attempts, Outcome: outcomeAttr(o), Err: err,
	}
	if atomic.CompareAndSwapInt32(&m.tr.emitted, 0, 1) {
		s.Steps = true
		s.ReceiveStart, s.ReceiveEnd = m.tr.received, m.tr.accepted
		if s.ReceiveEnd == 0 {
			s.ReceiveEnd = m.tr.decode[0]
		}
		if s.ReceiveEnd < s.ReceiveStart {
			s.ReceiveEnd = s.ReceiveStart
		}
		s.StoreStart, s.StoreEnd = m.tr.store[0], m.tr.store[1]
		s.DecodeStart, s.DecodeEnd = m.tr.decode[0], m.tr.decode[1]
		s.RouteStart, s.RouteEnd = m.tr.route[0], m.tr.route[1]
		s.RouteDecision, s.RouteSinks = routeDecision(m, o), int(m.tr.routed)
	}
	g.recorder.RecordMessageSpans(s)
	*s = MessageSpans{}
	spansPool.Put(s)
}

func routeDecision(m *Message, o uint32) string {
	switch {
	case o&outcomeDeadLetter != 0:
		return "dead_letter"
	case m.tr.routed == 0:
		return "unrouted"
	}
	return "routed"
}

// WithTraceSampling sets the head ratio and the tail rules (see the
// package's tracing notes). Ratio is for traces that start at the gateway;
// a device that sent a trace context decides with its sampled flag. A
// higher ratio shows more healthy traffic at about 2 µs of span work per
// sampled message and the exporter's bandwidth; the tail keeps every
// failed or slow message whatever the ratio. Latency 0 keeps failures
// only. Default: DefaultTraceSampling (ratio 0.01, tail on, 1s).
func WithTraceSampling(ts TraceSampling) Option {
	return func(s *settings) error {
		if math.IsNaN(ts.Ratio) || ts.Ratio < 0 || ts.Ratio > 1 {
			return fmt.Errorf("trace sampling: ratio %v out of range [0, 1]", ts.Ratio)
		}
		if ts.Latency < 0 {
			return fmt.Errorf("trace sampling: latency %v is negative", ts.Latency)
		}
		s.sampling = ts
		return nil
	}
}

const tracerName = "github.com/iotgw/gateway"

// Outcomes of a message that the tail sampler keeps (bits of
// msgTrace.outcome).
const (
	outcomeError uint32 = 1 << iota
	outcomeDrop
	outcomeRetry
	outcomeDeadLetter
)

// msgTrace is the tracing state a frame and then its message carry:
// plain fields, copied along, never allocated.
type msgTrace struct {
	started  bool
	replayed bool
	received int64        // Unix ns: the frame was read
	parent   trace.SpanID // the device's span; zero when the trace started here
	accepted int64        // Unix ns: a replayed frame was read from the store (0: see decode[0])
	store    [2]int64     // edge mode: write-ahead commit
	decode   [2]int64
	route    [2]int64
	routed   int32
	outcome  uint32 // atomic: outcome bits
	emitted  int32  // atomic: receive/decode/route spans were emitted
}

func (t *msgTrace) mark(o uint32) {
	for {
		old := atomic.LoadUint32(&t.outcome)
		if old&o == o || atomic.CompareAndSwapUint32(&t.outcome, old, old|o) {
			return
		}
	}
}

// ratioThreshold turns a ratio into a bound on the low 63 bits of the
// trace id, as the SDK's TraceIDRatioBased does.
func ratioThreshold(r float64) uint64 {
	if r >= 1 {
		return 1 << 63
	}
	return uint64(r * (1 << 63))
}

// startTrace gives f the gateway's trace context and the head decision.
// It runs once per frame, before any span exists.
func (g *Gateway) startTrace(f *Frame) {
	if f.tr.started {
		return
	}
	f.tr.started = true
	dev := f.Trace
	gw := &f.gw
	if dev.IsValid() {
		*gw = dev
		f.tr.parent = dev.SpanID
	} else {
		*gw = TraceContext{}
		f.tr.parent = trace.SpanID{}
		putUint64(gw.TraceID[:8], rand.Uint64())
		putUint64(gw.TraceID[8:], rand.Uint64())
		gw.Flags = trace.FlagsRandom
	}
	if g.tracer == nil {
		// Not traced here: pass the device's context on unchanged, as a
		// hop without instrumentation does.
		if !dev.IsValid() {
			putUint64(gw.SpanID[:], rand.Uint64()|1)
		}
		return
	}
	putUint64(gw.SpanID[:], rand.Uint64()|1)
	var sampled bool
	if dev.IsValid() {
		sampled = dev.Sampled()
	} else {
		sampled = be64(gw.TraceID[8:])&(math.MaxUint64>>1) < g.sampleBelow
	}
	if sampled {
		gw.Flags |= trace.FlagsSampled
	} else {
		gw.Flags &^= trace.FlagsSampled
	}
}

func putUint64(b []byte, v uint64) {
	_ = b[7]
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}

func be64(b []byte) uint64 {
	_ = b[7]
	var v uint64
	for i := 0; i < 8; i++ {
		v = v<<8 | uint64(b[i])
	}
	return v
}

// traceOn reports whether timings are noted: a tracer is set and either
// sampling path can keep a message.
func (g *Gateway) traceOn() bool { return g.tracer != nil }

func nowNS() int64 { return time.Now().UnixNano() }

// keep is the tail decision for m finishing at end with outcome bits o.
func (g *Gateway) keep(m *Message, o uint32, end int64) (keep, tail bool) {
	if m.Trace.Sampled() {
		return true, false
	}
	ts := &g.s.sampling
	if !ts.Tail {
		return false, false
	}
	if o != 0 {
		return true, true
	}
	if m.tr.received == 0 {
		return false, false
	}
	lat := end - m.tr.received
	if ts.Slow != nil {
		return ts.Slow(m.Connector, time.Duration(lat)), true
	}
	if ts.Latency > 0 && lat > int64(ts.Latency) {
		return true, true
	}
	return false, false
}

// finishMsg is called when one sink is done with m (published, or given
// up on), or when m leaves the pipeline without a sink (dropped,
// unrouted, dead-lettered into the store). sink is "" in the latter case;
// start and end bound the publish attempts. It emits m's spans when the
// head or the tail keeps it.
func (g *Gateway) finishMsg(m *Message, sink string, start, end int64, attempts int, o uint32, err error) {
	if g.tracer == nil {
		return
	}
	m.tr.mark(o)
	o = atomic.LoadUint32(&m.tr.outcome)
	keep, tail := g.keep(m, o, end)
	if !keep {
		return
	}
	if tail {
		g.stats.traceTail.Add(1)
	} else {
		g.stats.traceHead.Add(1)
	}
	g.emitSpans(m, sink, start, end, attempts, o, tail, err)
}

// RequestedSpanIDs returns the trace id and span id the gateway asks the
// next span started with ctx to get (see the tracing notes). traceID is
// zero when the span has a parent. An SDK ID generator calls it; package
// observe's does.
func RequestedSpanIDs(ctx context.Context) (traceID trace.TraceID, spanID trace.SpanID, ok bool) {
	r, ok := ctx.Value(spanIDKey{}).(*spanIDRequest)
	if !ok || r == nil {
		return trace.TraceID{}, trace.SpanID{}, false
	}
	return r.trace, r.span, true
}

type spanIDKey struct{}

type spanIDRequest struct {
	trace trace.TraceID
	span  trace.SpanID
}

var outcomeNames = [...]string{"error", "drop", "retry", "dead_letter"}

func outcomeAttr(o uint32) string {
	if o == 0 {
		return "ok"
	}
	for i, n := range outcomeNames {
		if o&(1<<i) != 0 {
			return n
		}
	}
	return "ok"
}

func ts(ns int64) trace.SpanStartEventOption { return trace.WithTimestamp(time.Unix(0, ns)) }

// emitSpans emits m's spans: receive, store, decode and route once per
// message, and one publish span for sink when sink is not "".
func (g *Gateway) emitSpans(m *Message, sink string, start, end int64, attempts int, o uint32, tail bool, err error) {
	if g.recorder != nil {
		g.recordSpans(m, sink, start, end, attempts, o, tail, err)
		return
	}
	tr := g.tracer
	self := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: m.Trace.TraceID, SpanID: m.Trace.SpanID,
		TraceFlags: m.Trace.Flags | trace.FlagsSampled,
	})
	if atomic.CompareAndSwapInt32(&m.tr.emitted, 0, 1) {
		req := &spanIDRequest{span: m.Trace.SpanID}
		var parent context.Context
		if m.tr.parent.IsValid() {
			psc := trace.NewSpanContext(trace.SpanContextConfig{
				TraceID: m.Trace.TraceID, SpanID: m.tr.parent,
				TraceFlags: m.Trace.Flags | trace.FlagsSampled, Remote: true,
			})
			parent = trace.ContextWithRemoteSpanContext(context.Background(), psc)
		} else {
			req.trace = m.Trace.TraceID
			parent = context.Background()
		}
		recvStart := m.tr.received
		recvEnd := m.tr.accepted
		if recvEnd == 0 {
			recvEnd = m.tr.decode[0]
		}
		if recvEnd < recvStart {
			recvEnd = recvStart
		}
		sampling := "head"
		if tail {
			sampling = "tail"
		}
		_, rs := tr.Start(context.WithValue(parent, spanIDKey{}, req), "receive",
			trace.WithSpanKind(trace.SpanKindConsumer), ts(recvStart),
			trace.WithAttributes(
				attribute.String("gateway.connector", m.Connector),
				attribute.String("gateway.device", m.Device),
				attribute.String("gateway.topic", m.Topic),
				attribute.String("gateway.message_id", m.ID.String()),
				attribute.String("gateway.sampling", sampling),
				attribute.Bool("gateway.replayed", m.tr.replayed),
			))
		rs.End(trace.WithTimestamp(time.Unix(0, recvEnd)))
		child := trace.ContextWithSpanContext(context.Background(), self)
		if m.tr.store[0] != 0 {
			_, s := tr.Start(child, "store", ts(m.tr.store[0]))
			s.End(trace.WithTimestamp(time.Unix(0, m.tr.store[1])))
		}
		if m.tr.decode[0] != 0 {
			_, s := tr.Start(child, "decode", ts(m.tr.decode[0]))
			s.End(trace.WithTimestamp(time.Unix(0, m.tr.decode[1])))
		}
		if m.tr.route[0] != 0 {
			decision := routeDecision(m, o)
			_, s := tr.Start(child, "route", ts(m.tr.route[0]), trace.WithAttributes(
				attribute.String("gateway.route.decision", decision),
				attribute.Int("gateway.route.sinks", int(m.tr.routed)),
			))
			s.End(trace.WithTimestamp(time.Unix(0, m.tr.route[1])))
		}
	}
	if sink == "" {
		return
	}
	_, s := tr.Start(trace.ContextWithSpanContext(context.Background(), self), "publish",
		trace.WithSpanKind(trace.SpanKindProducer), ts(start), trace.WithAttributes(
			attribute.String("gateway.sink", sink),
			attribute.Int("gateway.publish.attempts", attempts),
			attribute.String("gateway.outcome", outcomeAttr(o)),
		))
	if err != nil {
		s.SetStatus(codes.Error, err.Error())
	}
	s.End(trace.WithTimestamp(time.Unix(0, end)))
}

// finishDropped ends the trace of a message that leaves the pipeline
// without reaching a sink.
func (g *Gateway) finishDropped(m *Message, o uint32) {
	if g.tracer == nil {
		return
	}
	g.finishMsg(m, "", 0, nowNS(), 0, o, nil)
}

// TraceStats counts the messages whose spans were emitted.
type TraceStats struct {
	// Head counts messages kept by the head sampler, Tail those the tail
	// kept because they failed or were slow (one per finishing sink).
	Head, Tail uint64
}

// TraceStats returns the tracing counters.
func (g *Gateway) TraceStats() TraceStats {
	return TraceStats{Head: g.stats.traceHead.Load(), Tail: g.stats.traceTail.Load()}
}

// logAttrs are the attributes every log line about m carries: trace_id,
// span_id, device and connector.
func (m *Message) logAttrs() []any {
	return traceLogAttrs(m.Trace, m.Device, m.Connector)
}

// logAttrs is Message.logAttrs for a frame the gateway has taken.
func (f *Frame) logAttrs() []any {
	return traceLogAttrs(f.gw, f.Device, f.Connector)
}

func traceLogAttrs(tc TraceContext, device, connector string) []any {
	a := make([]any, 0, 12)
	if tc.TraceID.IsValid() {
		a = append(a, "trace_id", tc.TraceID.String(), "span_id", tc.SpanID.String())
	}
	return append(a, "device", device, "connector", connector)
}

// finishReplayed emits the publish spans of stored per-sink records that
// a replay just tried: their receive, decode and route spans were emitted
// when they were spilled (a spill is a retry, which the tail keeps).
func (g *Gateway) finishReplayed(msgs []*Message, sink string, start int64, err error) {
	end := nowNS()
	o := outcomeRetry
	if err != nil {
		o |= outcomeError
	}
	for _, m := range msgs {
		if !m.Trace.IsValid() {
			continue
		}
		m.tr.emitted = 1
		m.tr.replayed = true
		g.finishMsg(m, sink, start, end, 1, o, err)
	}
}
