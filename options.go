package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"go.opentelemetry.io/otel/metric"
)

// Option configures a Gateway. Options are applied in order by New; an
// invalid option makes New return an error, never panic.
type Option func(*settings) error

// Overflow is what a full bounded queue does with one more item.
type Overflow uint8

const (
	// Block makes producers wait for room: backpressure reaches the
	// connectors and, through them, the devices. The default.
	Block Overflow = iota
	// DropNewest rejects the incoming item (Deliver returns ErrDropped, so
	// the device is not acknowledged) and counts it.
	DropNewest
	// DropOldest evicts the oldest queued item to make room and counts it:
	// fresh data wins over stale data, at the cost of frames that were
	// already accepted.
	DropOldest
)

var overflowNames = map[string]Overflow{"block": Block, "drop-newest": DropNewest, "drop-oldest": DropOldest}

func (o Overflow) String() string {
	for k, v := range overflowNames {
		if v == o {
			return k
		}
	}
	return fmt.Sprintf("overflow(%d)", uint8(o))
}

// ParseOverflow parses "block", "drop-newest" or "drop-oldest".
func ParseOverflow(s string) (Overflow, error) {
	if o, ok := overflowNames[s]; ok {
		return o, nil
	}
	return 0, fmt.Errorf("unknown overflow policy %q (want block, drop-newest or drop-oldest)", s)
}

// Mode selects how the gateway treats an unreachable upstream.
type Mode uint8

const (
	// ModeDirect publishes straight upstream; while a sink fails, its queue
	// fills and backpressure (or the overflow policy) applies. The default.
	ModeDirect Mode = iota
	// ModeEdge adds store-and-forward: every frame is committed to the
	// Store before Uplink.Deliver returns nil (so what a device was told is
	// accepted survives kill -9 and power loss), messages a sink cannot
	// take are kept in the Store for that sink, and both are replayed with
	// their MessageID after recovery or a restart. Records leave the Store
	// only after every sink acknowledged them. Requires WithStore.
	ModeEdge
)

func (m Mode) String() string {
	if m == ModeEdge {
		return "edge"
	}
	return "direct"
}

// ParseMode parses "edge" or "direct".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "edge":
		return ModeEdge, nil
	case "direct", "":
		return ModeDirect, nil
	}
	return 0, fmt.Errorf("unknown mode %q (want edge or direct)", s)
}

type namedConnector struct {
	name string
	conn DeviceConnector
	hash string // config fingerprint; "" for components given as options
}

type namedSink struct {
	name string
	sink Sink
	live Sink // what live traffic is published to: sink, or a Drainer's wrapper of it
	hash string
}

type namedCodec struct {
	name  string
	codec Codec
	hash  string
}

type settings struct {
	logger          *slog.Logger
	connectors      []namedConnector
	codecs          []namedCodec
	defaultCodec    string
	sinks           []namedSink
	routes          []Route
	router          Router
	store           Store
	drainer         Drainer
	storeBuilt      bool // built from configuration: the gateway closes it
	shaper          Shaper
	policy          Policy
	mode            Mode
	qos             byte
	queueSize       int
	sinkQueueSize   int
	workers         int
	batchSize       int
	overflow        Overflow
	healthAddr      string
	shutdownTimeout time.Duration
	registry        *Registry
	configPath      string
	config          *Config
	watch           bool
	debounce        time.Duration
	allowEmpty      bool
	statsDevices    int
	connectorCodecs map[string]string
	deadLetter      DeadLetterConfig
	tracer          trace.Tracer
	recorder        SpanRecorder
	sampling        TraceSampling

	meterProvider  metric.MeterProvider
	healthHandlers []healthHandler
	statzReports   map[string]func() any
}

func defaultSettings() *settings {
	n := runtime.GOMAXPROCS(0)
	return &settings{
		logger:          slog.Default(),
		qos:             1,
		queueSize:       4096,
		sinkQueueSize:   1024,
		workers:         n,
		batchSize:       64,
		shutdownTimeout: 3 * time.Second,
		debounce:        300 * time.Millisecond,
		statsDevices:    20,
		connectorCodecs: map[string]string{},
		sampling:        DefaultTraceSampling,
	}
}

func validName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("%s name must not be empty", kind)
	}
	return nil
}

// WithConnector adds a southbound connector under a unique name. Frames from
// it are decoded with the codec set by WithConnectorCodec, else the default
// codec. Default: no connectors (a gateway without connectors is valid and
// only routes what Inject hands it).
func WithConnector(name string, c DeviceConnector) Option {
	return func(s *settings) error {
		if err := validName("connector", name); err != nil {
			return err
		}
		if c == nil {
			return fmt.Errorf("connector %q is nil", name)
		}
		s.connectors = append(s.connectors, namedConnector{name: name, conn: c})
		return nil
	}
}

// WithConnectorCodec decodes frames of connector with the named codec.
// Default: the default codec (see WithDefaultCodec).
func WithConnectorCodec(connector, codec string) Option {
	return func(s *settings) error {
		s.connectorCodecs[connector] = codec
		return nil
	}
}

// WithCodec registers a codec under a unique name. Default: only the
// built-in "raw" codec, which turns the payload into one bytes point named
// "raw".
func WithCodec(name string, c Codec) Option {
	return func(s *settings) error {
		if err := validName("codec", name); err != nil {
			return err
		}
		if c == nil {
			return fmt.Errorf("codec %q is nil", name)
		}
		s.codecs = append(s.codecs, namedCodec{name: name, codec: c})
		return nil
	}
}

// WithDefaultCodec names the codec for connectors without their own.
// Default: the only codec registered with WithCodec if there is exactly one,
// otherwise "raw".
func WithDefaultCodec(name string) Option {
	return func(s *settings) error {
		s.defaultCodec = name
		return nil
	}
}

// WithSink adds an upstream sink under a unique name. Default: no sinks;
// messages are then counted as unrouted and dropped.
func WithSink(name string, k Sink) Option {
	return func(s *settings) error {
		if err := validName("sink", name); err != nil {
			return err
		}
		if k == nil {
			return fmt.Errorf("sink %q is nil", name)
		}
		s.sinks = append(s.sinks, namedSink{name: name, sink: k})
		return nil
	}
}

// WithRoute adds a topic-filter route (see Route). Default: no routes, in
// which case every message goes to every sink.
func WithRoute(r Route) Option {
	return func(s *settings) error {
		s.routes = append(s.routes, r)
		return nil
	}
}

// WithRouter replaces the built-in topic router with r (for example the
// rule engine). It cannot be combined with WithRoute. Default: the built-in
// router.
func WithRouter(r Router) Option {
	return func(s *settings) error {
		if r == nil {
			return errors.New("router is nil")
		}
		s.router = r
		return nil
	}
}

// WithStore sets the durable queue used in ModeEdge. Default: none.
func WithStore(st Store) Option {
	return func(s *settings) error {
		if st == nil {
			return errors.New("store is nil")
		}
		s.store = st
		return nil
	}
}

// WithShaper applies p through sh when Run starts and closes sh when Run
// ends. A shaper that fails to apply is logged and the gateway runs on
// unshaped. Default: no shaping.
func WithShaper(sh Shaper, p Policy) Option {
	return func(s *settings) error {
		if sh == nil {
			return errors.New("shaper is nil")
		}
		s.shaper, s.policy = sh, p
		return nil
	}
}

// WithLogger sets the structured logger. Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(s *settings) error {
		if l == nil {
			return errors.New("logger is nil")
		}
		s.logger = l
		return nil
	}
}

// WithMode selects ModeDirect or ModeEdge. Default: ModeDirect.
func WithMode(m Mode) Option {
	return func(s *settings) error {
		if m > ModeEdge {
			return fmt.Errorf("unknown mode %d", m)
		}
		s.mode = m
		return nil
	}
}

// WithQoS sets the upstream QoS (0, 1 or 2) stamped on every message before
// routing; a router may change it per message. Default: 1.
func WithQoS(q byte) Option {
	return func(s *settings) error {
		if q > 2 {
			return fmt.Errorf("qos %d out of range 0..2", q)
		}
		s.qos = q
		return nil
	}
}

// WithQueueSize bounds the ingress queue between the access and decode
// planes, in frames. Memory is bounded by size times frame payload. Default:
// 4096.
func WithQueueSize(n int) Option {
	return func(s *settings) error {
		if n < 1 {
			return fmt.Errorf("queue size %d must be at least 1", n)
		}
		s.queueSize = n
		return nil
	}
}

// WithSinkQueueSize bounds each sink's queue, in messages. Default: 1024.
func WithSinkQueueSize(n int) Option {
	return func(s *settings) error {
		if n < 1 {
			return fmt.Errorf("sink queue size %d must be at least 1", n)
		}
		s.sinkQueueSize = n
		return nil
	}
}

// WithWorkers sets the number of pipeline shards. Each shard has its own
// slice of the ingress queue, one decode goroutine and one route goroutine;
// a device always maps to the same shard, so messages of one device keep
// their order end to end. Default: GOMAXPROCS.
func WithWorkers(n int) Option {
	return func(s *settings) error {
		if n < 1 || n > 1024 {
			return fmt.Errorf("workers %d out of range 1..1024", n)
		}
		s.workers = n
		return nil
	}
}

// WithBatchSize caps the messages handed to one Sink.Publish and moved
// between planes at once. Larger batches raise throughput and latency.
// Default: 64.
func WithBatchSize(n int) Option {
	return func(s *settings) error {
		if n < 1 || n > 4096 {
			return fmt.Errorf("batch size %d out of range 1..4096", n)
		}
		s.batchSize = n
		return nil
	}
}

// WithOverflow sets what full queues do (ingress and sink queues).
// Default: Block.
func WithOverflow(o Overflow) Option {
	return func(s *settings) error {
		if o > DropOldest {
			return fmt.Errorf("unknown overflow policy %d", o)
		}
		s.overflow = o
		return nil
	}
}

// WithHealthAddress serves /healthz, /readyz and /statz on addr
// ("127.0.0.1:8080", ":0" for a free port). Default: "" (no server; the
// handler is still available from Gateway.Handler).
func WithHealthAddress(addr string) Option {
	return func(s *settings) error {
		s.healthAddr = addr
		return nil
	}
}

// WithShutdownTimeout bounds how long Run drains queues into the sinks after
// its context ends. Default: 3s.
func WithShutdownTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("shutdown timeout %v must be positive", d)
		}
		s.shutdownTimeout = d
		return nil
	}
}

// WithRegistry supplies the factories that turn YAML sections into
// connectors, codecs, sinks and stores. Required by WithConfigFile and
// WithConfig when the file names any component kind.
func WithRegistry(r *Registry) Option {
	return func(s *settings) error {
		if r == nil {
			return errors.New("registry is nil")
		}
		s.registry = r
		return nil
	}
}

// WithConfigFile loads YAML configuration from path (see Config). Reload
// re-reads it; with watch true, Run also reloads it whenever the file
// changes. Components from the file come on top of those given as options.
func WithConfigFile(path string, watch bool) Option {
	return func(s *settings) error {
		s.configPath, s.watch = path, watch
		return nil
	}
}

// WithConfigDebounce sets how long a watched configuration file must stay
// unchanged (no write event, same size and modification time) before it
// is read. Editors and copies write a file in several steps; reading it
// between them would apply a half-written file, or reject it and log a
// spurious error. A longer debounce delays every reload by that much.
// YAML: gateway.reload_debounce. Default: 300ms.
func WithConfigDebounce(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 || d > time.Minute {
			return fmt.Errorf("config debounce %v out of range (0, 1m]", d)
		}
		s.debounce = d
		return nil
	}
}

// WithAllowEmptyReload lets a reload apply a configuration that leaves the
// gateway without any connector, or without any sink, while it has some.
// Default: false: such a reload (an empty file is one) is rejected like an
// invalid file, the last good configuration keeps running and the reason
// is logged, because a truncated file is far more often a copy or an
// editor caught mid-write than an intent to stop serving every device.
// The YAML key gateway.allow_empty_reload, in the running or in the new
// configuration, allows it too.
func WithAllowEmptyReload(allow bool) Option {
	return func(s *settings) error {
		s.allowEmpty = allow
		return nil
	}
}

// WithStatsDevices bounds the per-device entries each connector's or
// sink's counters carry in Stats and /statz (see StatsReporter): those
// with the most errors, malformed input, denials and reconnects first,
// then the busiest; the report counts the devices left out. 0 keeps the
// totals only. A larger bound costs a larger /statz answer for a large
// fleet. YAML: health.stats_devices. Default: 20.
func WithStatsDevices(n int) Option {
	return func(s *settings) error {
		if n < 0 || n > 100000 {
			return fmt.Errorf("stats devices %d out of range 0..100000", n)
		}
		s.statsDevices = n
		return nil
	}
}

// WithConfig applies a parsed configuration (see Config).
func WithConfig(c *Config) Option {
	return func(s *settings) error {
		if c == nil {
			return errors.New("config is nil")
		}
		s.config = c
		return nil
	}
}

type healthHandler struct {
	pattern string
	h       http.Handler
}

// WithHealthHandler serves h on the health server (see WithHealthAddress
// and Handler) under pattern, an http.ServeMux pattern such as
// "GET /metrics". The observe package's Prometheus endpoint is mounted
// this way. Default: only /healthz, /readyz and /statz. A pattern the
// gateway serves itself is an error.
func WithHealthHandler(pattern string, h http.Handler) Option {
	return func(s *settings) error {
		if h == nil {
			return fmt.Errorf("health handler %q is nil", pattern)
		}
		for _, own := range []string{"/healthz", "/readyz", "/statz"} {
			if strings.HasSuffix(pattern, own) {
				return fmt.Errorf("health handler %q: the gateway serves %s itself", pattern, own)
			}
		}
		s.healthHandlers = append(s.healthHandlers, healthHandler{pattern, h})
		return nil
	}
}

// WithStatzReport adds a section to the Stats snapshot (and so to /statz)
// under Stats.Reports[name], filled by calling report at each snapshot.
// report must be cheap and safe for concurrent use. Default: no reports.
// The observe package reports its SLO alerts this way.
func WithStatzReport(name string, report func() any) Option {
	return func(s *settings) error {
		if name == "" || report == nil {
			return errors.New("statz report needs a name and a function")
		}
		if s.statzReports == nil {
			s.statzReports = map[string]func() any{}
		}
		s.statzReports[name] = report
		return nil
	}
}
