package gateway

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/gateway/internal/backoff"
	"github.com/iotgw/gateway/internal/lograte"
	"github.com/iotgw/gateway/internal/retrylater"
	"go.opentelemetry.io/otel/trace"
)

// Gateway moves device frames through the planes:
//
//	connectors --Deliver--> [ingress queue] --> decode --> route --> [sink queue] --> Sink.Publish
//
// Every arrow is a bounded channel; a goroutine owned by the Gateway sits
// behind each one. Build it with New, start it with Run.
type Gateway struct {
	s    *settings
	log  *slog.Logger
	ids  *IDGenerator
	seed maphash.Seed

	shards []*shard

	// topoMu is held for reading by a route worker for the span of one
	// batch; Reload takes it for writing to swap the topology, so a message
	// is routed entirely by the old or entirely by the new configuration.
	topoMu sync.RWMutex
	topo   atomic.Pointer[topology]

	mu         sync.Mutex // guards the fields below and serialises Reload
	connectors map[string]*connRun
	sinks      map[string]*sinkRun
	retired    []*sinkRun // removed by reloads; kept so counter totals never shrink
	codecs     map[string]namedCodec
	routes     []Route
	config     *Config
	running    bool
	reloadErr  error
	lastReload time.Time

	defaultBind *binding
	qos         atomic.Uint32

	closing    atomic.Bool // ingress refuses new frames
	stopOnce   sync.Once
	stopCh     chan struct{}   // Close asks Run to stop
	doneCh     chan struct{}   // closed when Run returns
	hardStop   chan struct{}   // shutdown deadline passed
	pubCtx     context.Context // ends at the shutdown deadline
	cancelPub  context.CancelFunc
	health     *http.Server
	healthLn   net.Listener
	intakeDone chan struct{} // closed once connectors stopped and intake refuses frames
	decodeWG   sync.WaitGroup
	routeWG    sync.WaitGroup
	sinksWG    sync.WaitGroup
	connWG     sync.WaitGroup
	ctrlWG     sync.WaitGroup
	healthWG   sync.WaitGroup
	metrics    *gatewayMetrics

	releaseQ    retrylater.Queue[Record] // held records a failed Release left behind
	releaseDone chan struct{}            // closed when the release queue stopped
	logLim      *lograte.Limiter

	stats struct {
		reloads, reloadErrors atomic.Uint64
		spilled, replayed     atomic.Uint64
		deadLetters           atomic.Uint64 // kept: stored, or handed to the dead-letter sink or topic
		deadLetterErrors      atomic.Uint64 // could not be kept (edge mode: tried again)
		deadLettersDropped    atomic.Uint64 // no dead-letter place configured
		malformedRefused      atomic.Uint64 // refused before the ack (DeliverChecked)
		lostAtShutdown        atomic.Uint64
		traceHead, traceTail  atomic.Uint64
	}
	tracer      trace.Tracer // nil: not traced
	recorder    SpanRecorder // the provider's fast path, if it has one
	sampleBelow uint64       // head ratio as a bound on the trace id's low 63 bits
}

type shard struct {
	frames chan *Frame
	routeq chan *batch
	names  []string // route worker scratch

	framesIn     atomic.Uint64
	framesDrop   atomic.Uint64
	decodeErrors atomic.Uint64
	routed       atomic.Uint64
	unrouted     atomic.Uint64
	_            [64]byte // keep shards' counters on separate cache lines
}

type topology struct {
	router Router
	sinks  map[string]*sinkRun
}

type batch struct{ msgs []*Message }

var batchPool = sync.Pool{New: func() any { return &batch{msgs: make([]*Message, 0, 64)} }}

// binding is the Uplink handed to one connector: it stamps the connector's
// name on frames and carries its current codec, which a reload may swap
// without touching the connector.
type binding struct {
	g     *Gateway
	name  string
	codec atomic.Pointer[namedCodec]
}

var _ Uplink = (*binding)(nil)

func (b *binding) Deliver(ctx context.Context, f *Frame) error {
	f.Connector = b.name
	f.bind = b
	return b.g.deliver(ctx, f)
}

// New builds a Gateway from options. Nothing starts until Run.
func New(opts ...Option) (*Gateway, error) {
	s := defaultSettings()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(s); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	if s.configPath != "" {
		if s.config != nil {
			return nil, errors.New("gateway: WithConfig and WithConfigFile are mutually exclusive")
		}
		c, err := LoadConfig(s.configPath)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		s.config = c
	}
	if s.config != nil {
		if err := s.config.applyStatic(s); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
	}
	if s.router != nil && len(s.routes) > 0 {
		return nil, errors.New("gateway: WithRouter and WithRoute are mutually exclusive")
	}
	if err := s.pickDrainer(); err != nil {
		return nil, err
	}
	g := &Gateway{
		s:           s,
		log:         s.logger,
		ids:         NewIDGenerator(),
		seed:        maphash.MakeSeed(),
		connectors:  map[string]*connRun{},
		sinks:       map[string]*sinkRun{},
		codecs:      map[string]namedCodec{"raw": {name: "raw", codec: RawCodec{}}},
		stopCh:      make(chan struct{}),
		doneCh:      make(chan struct{}),
		hardStop:    make(chan struct{}),
		intakeDone:  make(chan struct{}),
		releaseDone: make(chan struct{}),
		logLim:      lograte.New(time.Minute),
		tracer:      s.tracer,
		recorder:    s.recorder,
		sampleBelow: ratioThreshold(s.sampling.Ratio),
	}
	g.pubCtx, g.cancelPub = context.WithCancel(context.Background())
	if err := g.initMetrics(); err != nil {
		return nil, fmt.Errorf("gateway: metrics: %w", err)
	}
	g.qos.Store(uint32(s.qos))
	per := (s.queueSize + s.workers - 1) / s.workers
	for i := 0; i < s.workers; i++ {
		g.shards = append(g.shards, &shard{
			frames: make(chan *Frame, per),
			routeq: make(chan *batch, 2),
		})
	}
	comp := components{
		connectors: s.connectors, codecs: s.codecs, sinks: s.sinks,
		routes: s.routes, codecFor: s.connectorCodecs, defaultCodec: s.defaultCodec,
	}
	if s.config != nil {
		cc, err := s.config.components(s.registry, func(string, string, string) bool { return false }, s.logger)
		if err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		comp = comp.merge(cc)
	}
	if err := g.apply(comp, false); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	g.config = s.config
	if n := s.deadLetter.Sink; n != "" && g.sinks[n] == nil {
		return nil, fmt.Errorf("gateway: dead letter: sink %q is not configured", n)
	}
	if s.mode == ModeEdge && s.store == nil {
		return nil, errors.New("gateway: mode edge needs a store (WithStore or the store: section)")
	}
	return g, nil
}

// Inject hands a frame to the gateway as if a connector named f.Connector
// had delivered it, decoding it with the default codec. It follows the
// same overflow rules as Uplink.Deliver and takes ownership of f.
func (g *Gateway) Inject(ctx context.Context, f *Frame) error {
	f.bind = g.defaultBind
	return g.deliver(ctx, f)
}

func (g *Gateway) shardFor(device string) *shard {
	if len(g.shards) == 1 {
		return g.shards[0]
	}
	return g.shards[maphash.String(g.seed, device)%uint64(len(g.shards))]
}

func (g *Gateway) deliver(ctx context.Context, f *Frame) error {
	if g.closing.Load() {
		f.Release()
		return ErrClosed
	}
	if f.Received.IsZero() {
		f.Received = time.Now()
	}
	g.startTrace(f)
	on := g.traceOn()
	if on {
		f.tr.received = f.Received.UnixNano()
	}
	if g.edge() {
		if on {
			f.tr.store[0] = nowNS()
		}
		if err := g.persistFrame(ctx, f); err != nil {
			f.Release()
			return err
		}
		if on {
			f.tr.store[1] = nowNS()
		}
	}
	return g.enqueue(ctx, f)
}

// enqueue queues an accepted (in edge mode: persisted) frame on its
// shard under the overflow policy, or undoes the acceptance and releases f.
func (g *Gateway) enqueue(ctx context.Context, f *Frame) error {
	sh := g.shardFor(f.Device)
	if tryEnqueue(sh.frames, f, g.s.overflow, func(old *Frame) {
		sh.framesDrop.Add(1)
		g.frameEvicted(old)
	}) {
		sh.framesIn.Add(1)
		return nil
	}
	if g.s.overflow == DropNewest {
		sh.framesDrop.Add(1)
		g.frameNotAccepted(f)
		return ErrDropped
	}
	select {
	case sh.frames <- f:
		sh.framesIn.Add(1)
		return nil
	case <-ctx.Done():
		g.frameNotAccepted(f)
		return ctx.Err()
	case <-g.stopCh:
		g.frameNotAccepted(f)
		return ErrClosed
	}
}

// tryEnqueue is the part of an overflow policy that never waits: it queues
// v when there is room, evicting the oldest items (through evict) under
// DropOldest. It reports whether v was queued; under Block and DropNewest a
// full queue leaves v with the caller.
func tryEnqueue[T any](q chan T, v T, o Overflow, evict func(T)) bool {
	for {
		select {
		case q <- v:
			return true
		default:
		}
		if o != DropOldest {
			return false
		}
		select {
		case old := <-q:
			evict(old)
		default:
		}
	}
}

// Run starts every plane and blocks until ctx ends or Close is called, then
// shuts down in order: connectors stop, queues drain into the sinks (bounded
// by the shutdown timeout), and Run returns once every goroutine it started
// has ended. A Gateway runs once.
func (g *Gateway) Run(ctx context.Context) error {
	g.mu.Lock()
	if g.running {
		g.mu.Unlock()
		return errors.New("gateway: Run called twice")
	}
	select {
	case <-g.stopCh:
		g.mu.Unlock()
		return ErrClosed
	default:
	}
	g.running = true
	g.mu.Unlock()
	defer close(g.doneCh)

	if g.s.shaper != nil {
		if err := g.s.shaper.Apply(ctx, g.s.policy); err != nil {
			g.log.Error("shaper not applied; running unshaped", "err", err)
		}
	}
	if g.s.healthAddr != "" {
		if err := g.startHealth(g.s.healthAddr); err != nil {
			return err
		}
	}
	g.registerComponent("store", g, g.s.store)
	if any(g.s.drainer) != any(g.s.store) {
		g.registerComponent("drainer", g, g.s.drainer)
	}
	g.registerComponent("shaper", g, g.s.shaper)
	for _, sh := range g.shards {
		g.decodeWG.Add(1)
		g.routeWG.Add(1)
		go g.decodeLoop(sh)
		go g.routeLoop(sh)
	}
	// Watch before connectors start: a change made once a device is
	// served is then never missed.
	var cw *configWatch
	if g.s.watch && g.s.configPath != "" {
		cw = g.openConfigWatch()
	}
	g.mu.Lock()
	for _, sr := range g.sinks {
		g.startSink(sr)
	}
	for _, cr := range g.connectors {
		g.startConnector(cr)
	}
	nConn, nSink := len(g.connectors), len(g.sinks)
	g.mu.Unlock()
	ctrlCtx, stopCtrl := context.WithCancel(context.Background())
	relCtx, stopRel := context.WithCancel(context.Background())
	if g.edge() {
		go g.runReleaseQueue(relCtx)
	} else {
		close(g.releaseDone)
	}
	if cw != nil {
		g.ctrlWG.Add(1)
		go g.watchConfig(ctrlCtx, cw)
	}
	if g.s.mode == ModeEdge {
		g.ctrlWG.Add(1)
		if g.s.drainer != nil {
			go g.drainLoop(ctrlCtx)
		} else {
			go g.replayLoop(ctrlCtx)
		}
	}
	g.log.Info("gateway running", "mode", g.s.mode.String(), "workers", len(g.shards),
		"connectors", nConn, "sinks", nSink)

	select {
	case <-ctx.Done():
	case <-g.stopCh:
	}
	g.shutdown(stopCtrl, stopRel)
	return nil
}

func (g *Gateway) shutdown(stopCtrl, stopRel context.CancelFunc) {
	start := time.Now()
	deadline := time.AfterFunc(g.s.shutdownTimeout, func() {
		close(g.hardStop)
		g.cancelPub()
	})
	defer deadline.Stop()
	g.stopOnce.Do(func() { close(g.stopCh) })

	// 1. stop control plane work that could restart connectors.
	stopCtrl()
	g.ctrlWG.Wait()
	// 2. stop intake: connectors first, then refuse stragglers.
	g.mu.Lock()
	for _, cr := range g.connectors {
		cr.stop()
	}
	g.mu.Unlock()
	g.connWG.Wait()
	g.closing.Store(true)
	close(g.intakeDone)
	// 3. drain the planes front to back.
	g.decodeWG.Wait()
	for _, sh := range g.shards {
		close(sh.routeq)
	}
	g.routeWG.Wait()
	g.mu.Lock()
	for _, sr := range g.sinks {
		close(sr.q)
	}
	g.mu.Unlock()
	g.sinksWG.Wait()
	// 4. last releases, while the store is still open.
	stopRel()
	<-g.releaseDone

	if g.health != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		_ = g.health.Shutdown(sctx)
		cancel()
		g.healthWG.Wait()
	}
	if g.s.shaper != nil {
		if err := g.s.shaper.Close(); err != nil {
			g.log.Error("shaper close", "err", err)
		}
	}
	g.cancelPub()
	g.closeMetrics()
	g.closeOwned()
	lost := g.stats.lostAtShutdown.Load()
	g.log.Info("gateway stopped", "took", time.Since(start).Round(time.Millisecond), "lost", lost)
}

// closeOwned closes components the gateway built from configuration.
func (g *Gateway) closeOwned() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, sr := range g.sinks {
		sr.closeImpl()
	}
	if g.s.storeBuilt {
		closeIfCloser(g.log, "store", g.s.store)
	}
}

func closeIfCloser(log *slog.Logger, what string, v any) {
	if c, ok := v.(io.Closer); ok {
		if err := c.Close(); err != nil {
			log.Warn("close", "component", what, "err", err)
		}
	}
}

// Close stops a running gateway and waits for Run to return. It is
// idempotent and safe to call before, during or after Run.
func (g *Gateway) Close() error {
	g.stopOnce.Do(func() { close(g.stopCh) })
	g.mu.Lock()
	running := g.running
	g.mu.Unlock()
	if running {
		<-g.doneCh
	}
	return nil
}

// decodeLoop is one shard's decode plane. It ends once intake is closed and
// its queue is empty, so every accepted frame is decoded.
func (g *Gateway) decodeLoop(sh *shard) {
	defer g.decodeWG.Done()
	max := g.s.batchSize
	for {
		select {
		case f := <-sh.frames:
			g.decodeBatch(sh, f, max)
		case <-g.intakeDone:
			for {
				select {
				case f := <-sh.frames:
					g.decodeBatch(sh, f, max)
				default:
					return
				}
			}
		}
	}
}

// decodeBatch decodes f and whatever else is queued, up to max, and hands
// the batch to the route plane.
func (g *Gateway) decodeBatch(sh *shard, f *Frame, max int) {
	b := batchPool.Get().(*batch)
	var t0 int64
	if g.traceOn() {
		t0 = nowNS()
	}
	for {
		if m := g.decode(sh, f); m != nil {
			b.msgs = append(b.msgs, m)
		}
		if len(b.msgs) >= max {
			break
		}
		select {
		case f = <-sh.frames:
			continue
		default:
		}
		break
	}
	if len(b.msgs) == 0 {
		batchPool.Put(b)
		return
	}
	if t0 != 0 {
		t1 := nowNS()
		for _, m := range b.msgs {
			m.tr.decode = [2]int64{t0, t1}
		}
	}
	sh.routeq <- b
}

func (g *Gateway) decode(sh *shard, f *Frame) *Message {
	if m := f.decoded; m != nil { // DeliverChecked decoded it already
		f.decoded = nil
		m.storeSeq = f.storeSeq
		m.tr.accepted, m.tr.store = f.tr.accepted, f.tr.store
		f.Release()
		return m
	}
	bind := f.bind
	if bind == nil {
		bind = g.defaultBind
	}
	nc := bind.codec.Load()
	m := g.newMessage(f)
	err := nc.codec.Decode(f, m)
	if err != nil {
		sh.decodeErrors.Add(1)
		return g.deadLetter(f, m, nc.name, err)
	}
	f.Release()
	return m
}

// newMessage returns a pooled message with f's metadata, ready for Decode.
func (g *Gateway) newMessage(f *Frame) *Message {
	m := acquireMessage()
	m.ID = f.ID
	m.storeSeq = f.storeSeq
	if m.ID.IsZero() {
		m.ID = g.ids.Next()
	}
	m.Device, m.Topic, m.Connector, m.Time = f.Device, f.Topic, f.Connector, f.Received
	m.Trace, m.tr = f.gw, f.tr

	if !f.Received.IsZero() {
		m.arrived = f.Received.UnixNano()
	}
	m.QoS = byte(g.qos.Load())
	m.Priority = PriorityNormal
	return m
}

// routeLoop is one shard's route plane. It ends when its queue is closed and
// empty.
func (g *Gateway) routeLoop(sh *shard) {
	defer g.routeWG.Done()
	for b := range sh.routeq {
		g.routeBatch(sh, b)
	}
}

func (g *Gateway) routeBatch(sh *shard, b *batch) {
	g.topoMu.RLock()
	t := g.topo.Load()
	var routed, unrouted uint64
	var t0, tNow int64
	on := g.traceOn()
	if on {
		t0 = nowNS()
		tNow = t0
	}
	for i, m := range b.msgs {
		b.msgs[i] = nil
		if m.deadSink != "" {
			sh.names = append(sh.names[:0], m.deadSink)
		} else {
			sh.names = t.router.Route(m, sh.names[:0])
		}
		if on {
			// The clock is read once per 16 decisions (it is a large part
			// of the cost on some virtual machines): a route span ends at
			// the decision, or up to 15 decisions before it.
			if i&15 == 15 {
				tNow = nowNS()
			}
			m.tr.route = [2]int64{t0, tNow}
		}
		n := 0
		for _, name := range sh.names {
			if t.sinks[name] != nil {
				n++
			}
		}
		if n == 0 && m.deadSink != "" {
			g.stats.deadLetterErrors.Add(1)
			g.log.Error("dead letter lost: its sink is gone", append(m.logAttrs(), "sink", m.deadSink)...)
			m.tr.mark(outcomeError)
		}
		if n == 0 {
			unrouted++
			g.finishDropped(m, outcomeDrop)
			if m.storeSeq != 0 {
				g.ackStored(m.storeSeq)
			}
			atomic.StoreInt32(&m.refs, 1)
			m.release()
			continue
		}
		routed++
		m.tr.routed = int32(n)
		atomic.StoreInt32(&m.refs, int32(n))
		atomic.StoreInt32(&m.pending, int32(n))
		for _, name := range sh.names {
			if sr := t.sinks[name]; sr != nil {
				sr.push(m)
			}
		}
	}
	g.topoMu.RUnlock()
	sh.routed.Add(routed)
	sh.unrouted.Add(unrouted)
	b.msgs = b.msgs[:0]
	batchPool.Put(b)
}

// connRun supervises one connector: connect with backoff, wait, disconnect.
type connRun struct {
	g    *Gateway
	nc   namedConnector
	bind *binding
	ctx  context.Context // ends when the connector is to stop
	stop context.CancelFunc
	done chan struct{}

	up       atomic.Bool
	lastErr  atomic.Pointer[string]
	attempts atomic.Uint64
}

func (g *Gateway) newConnRun(nc namedConnector, codec namedCodec) *connRun {
	b := &binding{g: g, name: nc.name}
	b.codec.Store(&codec)
	ctx, cancel := context.WithCancel(context.Background())
	return &connRun{g: g, nc: nc, bind: b, ctx: ctx, stop: cancel, done: make(chan struct{})}
}

func (g *Gateway) startConnector(cr *connRun) {
	key := "connector/" + cr.nc.name
	g.registerComponent(key, cr, cr.nc.conn, attrConnector.String(cr.nc.name))
	g.connWG.Add(1)
	go func() {
		defer g.connWG.Done()
		defer close(cr.done)
		defer g.unregisterComponent(key, cr)
		cr.supervise()
	}()
}

// supervise connects (retrying with backoff until it works or the
// connector is stopped), then waits for the stop and disconnects.
func (cr *connRun) supervise() {
	g := cr.g
	bo := backoff.Backoff{Min: 200 * time.Millisecond, Max: 30 * time.Second}
	for {
		cr.attempts.Add(1)
		ctx, cancel := context.WithTimeout(cr.ctx, 30*time.Second)
		err := cr.nc.conn.Connect(ctx, cr.bind)
		cancel()
		if err == nil {
			cr.up.Store(true)
			cr.lastErr.Store(nil)
			g.log.Info("connector up", "connector", cr.nc.name)
			break
		}
		msg := err.Error()
		cr.lastErr.Store(&msg)
		if cr.ctx.Err() != nil {
			return
		}
		d := bo.Next()
		g.log.Warn("connector failed to start; retrying", "connector", cr.nc.name, "err", err, "retry_in", d.Round(time.Millisecond))
		if !backoff.Sleep(cr.ctx, d) {
			return
		}
	}
	<-cr.ctx.Done()
	ctx, cancel := context.WithTimeout(context.Background(), g.s.shutdownTimeout)
	defer cancel()
	if err := cr.nc.conn.Disconnect(ctx); err != nil {
		g.log.Warn("connector disconnect", "connector", cr.nc.name, "err", err)
	}
	cr.up.Store(false)
	g.log.Info("connector down", "connector", cr.nc.name)
}
