package observe

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/iotgw/gateway"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tracing is the OpenTelemetry SDK set up for a gateway's traces: a
// TracerProvider that samples what the gateway decided (head and tail, see
// gateway.WithTraceSampling) and gives the gateway's spans the ids the
// messages carry, a bounded queue whose overflow is counted, and an
// OTLP/HTTP exporter (protobuf, over net/http: no gRPC is linked) whose failed requests
// wait in a spool (a gateway.Store) while the uplink is down and are
// delivered after it recovers, at a lower priority than data.
//
// Wire it to a gateway with Options:
//
//	tr, err := observe.NewTracing(ctx, observe.WithOTLPEndpoint("http://collector:4318"))
//	g, err := gateway.New(append(opts, tr.Options()...)...)
//	defer tr.Shutdown(ctx)
type Tracing struct {
	tp    *sdktrace.TracerProvider
	prov  trace.TracerProvider // tp, with the gateway's fast path when exporting over OTLP
	enc   *spanEncoder         // nil without WithOTLPEndpoint
	proc  *boundedProcessor
	spool *Spool
	s     traceSettings
}

type traceSettings struct {
	endpoint    string
	exporter    sdktrace.SpanExporter
	service     string
	sampling    gateway.TraceSampling
	queue       int
	batch       int
	interval    time.Duration
	timeout     time.Duration
	spoolStore  gateway.Store
	spoolYield  func() bool
	spoolRetry  time.Duration
	resourceKVs []attribute.KeyValue
}

// TraceOption configures NewTracing.
type TraceOption func(*traceSettings) error

// WithOTLPEndpoint exports spans with OTLP/HTTP protobuf to url, a base
// such as "http://127.0.0.1:4318" ("/v1/traces" is added) or a full URL
// ending in "/v1/traces". Default: none; without it or WithSpanExporter,
// kept spans are counted as dropped.
func WithOTLPEndpoint(url string) TraceOption {
	return func(s *traceSettings) error {
		if !strings.HasPrefix(url, "http://") && !strings.HasPrefix(url, "https://") {
			return fmt.Errorf("otlp endpoint %q: want an http:// or https:// URL", url)
		}
		s.endpoint = url
		return nil
	}
}

// WithSpanExporter exports spans with e instead of OTLP/HTTP (tests, or
// another protocol). The spool does not apply to it. Default: none.
func WithSpanExporter(e sdktrace.SpanExporter) TraceOption {
	return func(s *traceSettings) error {
		if e == nil {
			return errors.New("span exporter is nil")
		}
		s.exporter = e
		return nil
	}
}

// WithTraceServiceName sets the service.name resource attribute of the
// spans (use the same name as New's WithServiceName). Default:
// "gatewayd".
func WithTraceServiceName(name string) TraceOption {
	return func(s *traceSettings) error {
		if name == "" {
			return errors.New("service name is empty")
		}
		s.service = name
		return nil
	}
}

// WithResourceAttributes adds attributes to the resource of every span
// (host.name, deployment.environment, ...). Default: service.name only.
func WithResourceAttributes(kv ...attribute.KeyValue) TraceOption {
	return func(s *traceSettings) error {
		s.resourceKVs = append(s.resourceKVs, kv...)
		return nil
	}
}

// WithSampling sets the gateway's head ratio and tail rules (Options passes
// them on with gateway.WithTraceSampling). Default:
// gateway.DefaultTraceSampling (1 % head, tail on, 1s).
func WithSampling(ts gateway.TraceSampling) TraceOption {
	return func(s *traceSettings) error {
		if math.IsNaN(ts.Ratio) || ts.Ratio < 0 || ts.Ratio > 1 {
			return fmt.Errorf("sampling ratio %v out of range [0, 1]", ts.Ratio)
		}
		s.sampling = ts
		return nil
	}
}

// WithSpanQueue bounds the spans waiting for export in memory and sets
// how many go in one request. A span takes about 1 KiB, so the default
// 4096 holds about 4 MiB; a span that finds the queue full is dropped and
// counted (TraceExportStats.Dropped). A larger queue rides out longer
// export stalls at the cost of memory (the spool takes over for outages).
// Default: 4096 spans, batches of 512.
func WithSpanQueue(spans, batch int) TraceOption {
	return func(s *traceSettings) error {
		if spans < 1 || batch < 1 || batch > spans {
			return fmt.Errorf("span queue %d, batch %d: want 1 <= batch <= queue", spans, batch)
		}
		s.queue, s.batch = spans, batch
		return nil
	}
}

// WithExportInterval sets how often queued spans are sent when a batch is
// not full yet, and the timeout of one export. Default: 1s, 5s.
func WithExportInterval(every, timeout time.Duration) TraceOption {
	return func(s *traceSettings) error {
		if every <= 0 || timeout <= 0 {
			return fmt.Errorf("export interval %v, timeout %v: want both positive", every, timeout)
		}
		s.interval, s.timeout = every, timeout
		return nil
	}
}

// WithSpool keeps the OTLP requests that cannot be delivered in st (see
// Spool) and sends them once the endpoint answers again. st must be a
// store of its own (a second resume.SQLiteStore file): its MaxBytes or
// MaxRows is the telemetry's quota, and with resume.OverflowDropOldest
// the oldest telemetry goes first when it is full (counted in its
// Stats.Evicted). yield, when not nil, is asked before each replay: while
// it returns true (data is waiting, for example the gateway store's rows
// are not zero) telemetry waits, so it never competes with data for the
// recovering uplink, and new spans go to the spool too. retry is the pause
// after a failed replay. Default: no spool; an export that fails is
// dropped and counted.
func WithSpool(st gateway.Store, yield func() bool, retry time.Duration) TraceOption {
	return func(s *traceSettings) error {
		if st == nil {
			return errors.New("spool store is nil")
		}
		if retry <= 0 {
			retry = time.Second
		}
		s.spoolStore, s.spoolYield, s.spoolRetry = st, yield, retry
		return nil
	}
}

// NewTracing builds the SDK for a gateway's traces. Shutdown flushes it.
func NewTracing(ctx context.Context, opts ...TraceOption) (*Tracing, error) {
	s := traceSettings{
		service: "gatewayd", sampling: gateway.DefaultTraceSampling,
		queue: 4096, batch: 512, interval: time.Second, timeout: 5 * time.Second,
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&s); err != nil {
			return nil, fmt.Errorf("observe: tracing: %w", err)
		}
	}
	if s.endpoint != "" && s.exporter != nil {
		return nil, errors.New("observe: tracing: WithOTLPEndpoint and WithSpanExporter are mutually exclusive")
	}
	t := &Tracing{s: s}
	exp := s.exporter
	if s.endpoint != "" {
		url := tracesURL(s.endpoint)
		if s.spoolStore != nil {
			t.spool = NewSpool(s.spoolStore, s.spoolYield, s.spoolRetry)
			t.spool.Handle(SignalTraces, OTLPHTTPSender(url, s.timeout))
		}
		client := newOTLPHTTPClient(url, s.timeout, t.spool)
		e, err := otlptrace.New(ctx, client)
		if err != nil {
			return nil, fmt.Errorf("observe: tracing: exporter: %w", err)
		}
		exp = e
		t.enc = newSpanEncoder(client.uploadBody, s.service, s.queue, s.batch, s.interval, s.timeout)
	}
	res, err := resource.New(ctx, resource.WithAttributes(
		append([]attribute.KeyValue{attribute.String("service.name", s.service)}, s.resourceKVs...)...))
	if err != nil {
		return nil, fmt.Errorf("observe: tracing: resource: %w", err)
	}
	t.proc = newBoundedProcessor(exp, s.queue, s.batch, s.interval, s.timeout)
	t.tp = sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithIDGenerator(IDGenerator()),
		sdktrace.WithResource(res),
		sdktrace.WithSpanProcessor(t.proc),
	)
	t.prov = t.tp
	if t.enc != nil {
		t.prov = &provider{TracerProvider: t.tp, enc: t.enc}
	}
	if t.spool != nil {
		t.spool.Start()
	}
	return t, nil
}

// tracesURL is endpoint with "/v1/traces" unless it ends so already.
func tracesURL(endpoint string) string {
	url := strings.TrimSuffix(endpoint, "/")
	if !strings.HasSuffix(url, "/v1/traces") {
		url += "/v1/traces"
	}
	return url
}

// TracerProvider returns the provider (for a host's own spans too). With
// WithOTLPEndpoint it is also a gateway.SpanRecorder: the gateway's spans
// are encoded straight to OTLP protobuf, without the SDK's per-span
// objects (the SDK's cost per span is about ten allocations).
func (t *Tracing) TracerProvider() trace.TracerProvider { return t.prov }

// Options returns the gateway options that trace with t:
// gateway.WithTracerProvider and gateway.WithTraceSampling.
func (t *Tracing) Options() []gateway.Option {
	return []gateway.Option{gateway.WithTracerProvider(t.prov), gateway.WithTraceSampling(t.s.sampling)}
}

// Spool returns the outage spool, nil without WithSpool. The metrics side
// feeds its 1-minute rollups through it (see Spool.Handle and Spool.Put).
func (t *Tracing) Spool() *Spool { return t.spool }

// TraceExportStats counts spans on their way out.
type TraceExportStats struct {
	// Queued spans wait in memory; Exported were accepted by the exporter
	// (or handed to the spool); Dropped found the queue full or failed
	// to export without a spool; Failed counts failed export requests.
	Queued                    int
	Exported, Dropped, Failed uint64
	// Spool is the outage spool's counters (zero without one).
	Spool SpoolStats
}

// Stats returns the export counters.
func (t *Tracing) Stats() TraceExportStats {
	st := t.proc.stats()
	if e := t.enc; e != nil {
		e.mu.Lock()
		st.Queued += e.n
		e.mu.Unlock()
		st.Exported += e.exported.Load()
		st.Dropped += e.dropped.Load()
		st.Failed += e.failed.Load()
	}
	if t.spool != nil {
		st.Spool = t.spool.Stats()
	}
	return st
}

// ForceFlush exports every queued span now.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t.enc != nil {
		if err := t.enc.forceFlush(ctx); err != nil {
			return err
		}
	}
	return t.tp.ForceFlush(ctx)
}

// Shutdown flushes the queue, stops the exporter and the spool (what it
// holds stays in its store for the next start).
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.enc != nil {
		_ = t.enc.shutdown(ctx)
	}
	err := t.tp.Shutdown(ctx)
	if t.spool != nil {
		t.spool.Stop()
	}
	return err
}

// IDGenerator returns the SDK ID generator that gives the gateway's spans
// the ids its messages carry (gateway.RequestedSpanIDs) and random ids to
// every other span. NewTracing uses it; a host with an SDK of its own must
// pass it with sdktrace.WithIDGenerator.
func IDGenerator() sdktrace.IDGenerator { return idGenerator{} }

type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if tid, sid, ok := gateway.RequestedSpanIDs(ctx); ok && tid.IsValid() && sid.IsValid() {
		return tid, sid
	}
	var tid trace.TraceID
	for !tid.IsValid() {
		_, _ = rand.Read(tid[:])
	}
	return tid, randomSpanID()
}

func (idGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if _, sid, ok := gateway.RequestedSpanIDs(ctx); ok && sid.IsValid() {
		return sid
	}
	return randomSpanID()
}

func randomSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		var b [8]byte
		_, _ = rand.Read(b[:])
		binary.BigEndian.PutUint64(sid[:], binary.BigEndian.Uint64(b[:]))
	}
	return sid
}
