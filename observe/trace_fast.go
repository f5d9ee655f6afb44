package observe

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/gateway"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
)

// provider is the SDK TracerProvider plus the gateway's fast path
// (gateway.SpanRecorder): a kept message's spans are encoded straight to
// OTLP protobuf into a bounded buffer, without the SDK's per-span objects.
// Spans of other tracers (a host's own) go through the SDK as usual.
type provider struct {
	*sdktrace.TracerProvider
	enc *spanEncoder
}

var _ gateway.SpanRecorder = (*provider)(nil)

func (p *provider) RecordMessageSpans(s *gateway.MessageSpans) { p.enc.record(s) }

// OTLP span kinds.
const (
	kindInternal = 1
	kindProducer = 4
	kindConsumer = 5
)

// spanEncoder keeps encoded spans (each a ScopeSpans.spans field) until
// the export loop sends them; at most max spans wait, the rest are counted
// as dropped.
type spanEncoder struct {
	upload   func(ctx context.Context, body []byte) error
	max      int
	batch    int
	interval time.Duration
	timeout  time.Duration
	header   []byte // ResourceSpans.resource and the ScopeSpans.scope field

	mu     sync.Mutex
	buf    []byte
	spare  []byte // the other buffer, while flush encodes one
	n      int
	span   []byte // scratch: one span
	closed bool
	kick   chan struct{}
	ctl    flushCtl

	exported, dropped, failed atomic.Uint64
}

func newSpanEncoder(upload func(context.Context, []byte) error, service string, max, batch int, interval, timeout time.Duration) *spanEncoder {
	e := &spanEncoder{
		upload: upload, max: max, batch: batch, interval: interval, timeout: timeout,
		kick: make(chan struct{}, 1), ctl: newFlushCtl(),
	}
	// Resource{attributes: [service.name]}
	res := appendKVString(nil, 1, "service.name", service)
	e.header = protowire.AppendTag(nil, 1, protowire.BytesType)
	e.header = protowire.AppendBytes(e.header, res)
	go e.loop()
	return e
}

// record encodes the spans s describes.
func (e *spanEncoder) record(s *gateway.MessageSpans) {
	count := 0
	if s.Steps {
		count++ // receive
		for _, st := range [...]int64{s.StoreStart, s.DecodeStart, s.RouteStart} {
			if st != 0 {
				count++
			}
		}
	}
	if s.Sink != "" {
		count++
	}
	if count == 0 {
		return
	}
	e.mu.Lock()
	if e.closed || e.n+count > e.max {
		e.mu.Unlock()
		e.dropped.Add(uint64(count))
		return
	}
	if s.Steps {
		sampling := "head"
		if s.Tail {
			sampling = "tail"
		}
		sp := e.startSpan(s, s.SpanID, s.Parent, "receive", kindConsumer, s.ReceiveStart, s.ReceiveEnd)
		sp = appendKVString(sp, 9, "gateway.connector", s.Connector)
		sp = appendKVString(sp, 9, "gateway.device", s.Device)
		sp = appendKVString(sp, 9, "gateway.topic", s.Topic)
		var id [32]byte
		sp = appendKVString(sp, 9, "gateway.message_id", string(s.MessageID.AppendHex(id[:0])))
		sp = appendKVString(sp, 9, "gateway.sampling", sampling)
		sp = appendKVBool(sp, 9, "gateway.replayed", s.Replayed)
		e.endSpan(sp)
		if s.StoreStart != 0 {
			e.endSpan(e.startSpan(s, newSpanID(), s.SpanID, "store", kindInternal, s.StoreStart, s.StoreEnd))
		}
		if s.DecodeStart != 0 {
			e.endSpan(e.startSpan(s, newSpanID(), s.SpanID, "decode", kindInternal, s.DecodeStart, s.DecodeEnd))
		}
		if s.RouteStart != 0 {
			sp := e.startSpan(s, newSpanID(), s.SpanID, "route", kindInternal, s.RouteStart, s.RouteEnd)
			sp = appendKVString(sp, 9, "gateway.route.decision", s.RouteDecision)
			sp = appendKVInt(sp, 9, "gateway.route.sinks", int64(s.RouteSinks))
			e.endSpan(sp)
		}
	}
	if s.Sink != "" {
		sp := e.startSpan(s, newSpanID(), s.SpanID, "publish", kindProducer, s.PublishStart, s.PublishEnd)
		sp = appendKVString(sp, 9, "gateway.sink", s.Sink)
		sp = appendKVInt(sp, 9, "gateway.publish.attempts", int64(s.Attempts))
		sp = appendKVString(sp, 9, "gateway.outcome", s.Outcome)
		if s.Err != nil {
			// Status{message: 2, code: 3 = STATUS_CODE_ERROR}
			msg := s.Err.Error()
			n := protowire.SizeTag(2) + protowire.SizeBytes(len(msg)) + protowire.SizeTag(3) + protowire.SizeVarint(2)
			sp = protowire.AppendTag(sp, 15, protowire.BytesType)
			sp = protowire.AppendVarint(sp, uint64(n))
			sp = protowire.AppendTag(sp, 2, protowire.BytesType)
			sp = protowire.AppendString(sp, msg)
			sp = protowire.AppendTag(sp, 3, protowire.VarintType)
			sp = protowire.AppendVarint(sp, 2)
		}
		e.endSpan(sp)
	}
	e.n += count
	full := e.n >= e.batch
	e.mu.Unlock()
	if full {
		select {
		case e.kick <- struct{}{}:
		default:
		}
	}
}

// startSpan begins a Span message in the scratch buffer (e.mu held).
func (e *spanEncoder) startSpan(s *gateway.MessageSpans, id, parent trace.SpanID, name string, kind uint64, start, end int64) []byte {
	if end < start {
		end = start
	}
	sp := e.span[:0]
	sp = protowire.AppendTag(sp, 1, protowire.BytesType)
	sp = protowire.AppendBytes(sp, s.TraceID[:])
	sp = protowire.AppendTag(sp, 2, protowire.BytesType)
	sp = protowire.AppendBytes(sp, id[:])
	if s.State != "" {
		sp = protowire.AppendTag(sp, 3, protowire.BytesType)
		sp = protowire.AppendString(sp, s.State)
	}
	if parent.IsValid() {
		sp = protowire.AppendTag(sp, 4, protowire.BytesType)
		sp = protowire.AppendBytes(sp, parent[:])
	}
	sp = protowire.AppendTag(sp, 5, protowire.BytesType)
	sp = protowire.AppendString(sp, name)
	sp = protowire.AppendTag(sp, 6, protowire.VarintType)
	sp = protowire.AppendVarint(sp, kind)
	sp = protowire.AppendTag(sp, 7, protowire.Fixed64Type)
	sp = protowire.AppendFixed64(sp, uint64(start))
	sp = protowire.AppendTag(sp, 8, protowire.Fixed64Type)
	sp = protowire.AppendFixed64(sp, uint64(end))
	return sp
}

// endSpan appends the finished span as a ScopeSpans.spans field (e.mu held).
func (e *spanEncoder) endSpan(sp []byte) {
	e.buf = protowire.AppendTag(e.buf, 2, protowire.BytesType)
	e.buf = protowire.AppendBytes(e.buf, sp)
	e.span = sp[:0]
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	v := rand.Uint64() | 1
	for i := 7; i >= 0; i-- {
		id[i] = byte(v)
		v >>= 8
	}
	return id
}

// appendKVString appends a KeyValue with a string value as field num.
func appendKVString(dst []byte, num protowire.Number, key, val string) []byte {
	anyLen := protowire.SizeTag(1) + protowire.SizeBytes(len(val))
	kvLen := protowire.SizeTag(1) + protowire.SizeBytes(len(key)) + protowire.SizeTag(2) + protowire.SizeBytes(anyLen)
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(kvLen))
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendString(dst, key)
	dst = protowire.AppendTag(dst, 2, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(anyLen))
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	return protowire.AppendString(dst, val)
}

// appendKVInt appends a KeyValue with an int value (AnyValue field 3).
func appendKVInt(dst []byte, num protowire.Number, key string, v int64) []byte {
	anyLen := protowire.SizeTag(3) + protowire.SizeVarint(uint64(v))
	kvLen := protowire.SizeTag(1) + protowire.SizeBytes(len(key)) + protowire.SizeTag(2) + protowire.SizeBytes(anyLen)
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(kvLen))
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendString(dst, key)
	dst = protowire.AppendTag(dst, 2, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(anyLen))
	dst = protowire.AppendTag(dst, 3, protowire.VarintType)
	return protowire.AppendVarint(dst, uint64(v))
}

// appendKVBool appends a KeyValue with a bool value (AnyValue field 2).
func appendKVBool(dst []byte, num protowire.Number, key string, v bool) []byte {
	b := uint64(0)
	if v {
		b = 1
	}
	anyLen := protowire.SizeTag(2) + protowire.SizeVarint(b)
	kvLen := protowire.SizeTag(1) + protowire.SizeBytes(len(key)) + protowire.SizeTag(2) + protowire.SizeBytes(anyLen)
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(kvLen))
	dst = protowire.AppendTag(dst, 1, protowire.BytesType)
	dst = protowire.AppendString(dst, key)
	dst = protowire.AppendTag(dst, 2, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(anyLen))
	dst = protowire.AppendTag(dst, 2, protowire.VarintType)
	return protowire.AppendVarint(dst, b)
}

// scopeName is the instrumentation scope of the gateway's spans.
const scopeName = "github.com/iotgw/gateway"

func (e *spanEncoder) loop() {
	defer close(e.ctl.done)
	t := time.NewTicker(e.interval)
	defer t.Stop()
	for {
		select {
		case <-e.kick:
			e.flush()
		case <-t.C:
			e.flush()
		case ack := <-e.ctl.flushes:
			e.flush()
			if ack == nil {
				return
			}
			close(ack)
		}
	}
}

// flush sends what is buffered as one ExportTraceServiceRequest.
func (e *spanEncoder) flush() {
	e.mu.Lock()
	if e.n == 0 {
		e.mu.Unlock()
		return
	}
	spans, n := e.buf, e.n
	e.buf, e.spare, e.n = e.spare[:0], nil, 0
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		e.spare = spans[:0]
		e.mu.Unlock()
	}()
	scope := protowire.AppendTag(nil, 1, protowire.BytesType) // InstrumentationScope{name}
	scope = protowire.AppendVarint(scope, uint64(protowire.SizeTag(1)+protowire.SizeBytes(len(scopeName))))
	scope = protowire.AppendTag(scope, 1, protowire.BytesType)
	scope = protowire.AppendString(scope, scopeName)
	ssLen := len(scope) + len(spans)
	rsLen := len(e.header) + protowire.SizeTag(2) + protowire.SizeBytes(ssLen)
	body := make([]byte, 0, protowire.SizeTag(1)+protowire.SizeBytes(rsLen))
	body = protowire.AppendTag(body, 1, protowire.BytesType)
	body = protowire.AppendVarint(body, uint64(rsLen))
	body = append(body, e.header...)
	body = protowire.AppendTag(body, 2, protowire.BytesType)
	body = protowire.AppendVarint(body, uint64(ssLen))
	body = append(body, scope...)
	body = append(body, spans...)
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	err := e.upload(ctx, body)
	cancel()
	if err != nil {
		e.failed.Add(1)
		e.dropped.Add(uint64(n))
		return
	}
	e.exported.Add(uint64(n))
}

func (e *spanEncoder) forceFlush(ctx context.Context) error { return e.ctl.flush(ctx) }

func (e *spanEncoder) shutdown(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	return e.ctl.stop(ctx)
}
