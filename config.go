package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the YAML configuration of a gateway. Every section is
// optional; what is left out keeps the defaults of the matching Option.
//
//	gateway:
//	  name: gw-1
//	  mode: edge            # edge | direct (default)
//	  queue_size: 4096      # ingress queue, frames
//	  sink_queue_size: 1024 # per sink, messages
//	  workers: 2            # pipeline shards (default GOMAXPROCS)
//	  batch_size: 64
//	  overflow: block       # block | drop-newest | drop-oldest
//	  shutdown_timeout: 3s
//	  allow_empty_reload: false # true lets a reload remove every connector or every sink
//	  reload_debounce: 300ms    # the watched file must be still this long before it is read
//	  dead_letter: {sink: quarantine}  # or {topic: "dead/{connector}/{device}"}; default:
//	                                   # the store's dead_letter table in edge mode
//	mqtt:
//	  qos: 1                # upstream QoS for every message
//	rules:
//	  enabled: false        # true loads rules/*.rego through a registered rules engine
//	  dir: rules
//	health:
//	  address: 127.0.0.1:8080
//	  stats_devices: 20     # per-device entries per component in /statz
//	codecs:
//	  - name: env
//	    sim: {}             # exactly one key naming the codec kind
//	connectors:
//	  - name: plc1
//	    codec: env          # default: the default codec
//	    modbus:             # exactly one key naming the connector kind
//	      address: 10.0.0.5:502
//	sinks:
//	  - name: cloud
//	    mqtt: {broker: "tcp://broker:1883"}
//	routes:
//	  - name: alarms
//	    topic: "plant/+/alarm/#"
//	    tags: {site: A}
//	    sinks: [cloud]
//	store:
//	  sqlite: {path: /var/lib/gw/queue.db}
//
// Kind blocks are decoded by the factory registered for the kind in the
// Registry given to WithRegistry.
type Config struct {
	Gateway    GatewayConfig     `yaml:"gateway"`
	MQTT       MQTTConfig        `yaml:"mqtt"`
	Rules      RulesConfig       `yaml:"rules"`
	Health     HealthConfig      `yaml:"health"`
	Codecs     []ComponentConfig `yaml:"codecs"`
	Connectors []ComponentConfig `yaml:"connectors"`
	Sinks      []ComponentConfig `yaml:"sinks"`
	Routes     []RouteConfig     `yaml:"routes"`
	Store      *ComponentConfig  `yaml:"store"`
	// Log is the log: section, for the host that builds the logger (the
	// gateway itself logs through WithLogger).
	Log LogConfig `yaml:"log"`
	// Observe is the observe: section, kept raw for the observe package
	// (metrics, SLOs), which decodes it with its own types.
	Observe Section `yaml:"observe"`

	file  string
	empty bool // the document was empty (no YAML at all)
}

// GatewayConfig is the gateway: section. Zero values keep the defaults.
type GatewayConfig struct {
	Name            string        `yaml:"name"`
	Mode            string        `yaml:"mode"`
	QueueSize       int           `yaml:"queue_size"`
	SinkQueueSize   int           `yaml:"sink_queue_size"`
	Workers         int           `yaml:"workers"`
	BatchSize       int           `yaml:"batch_size"`
	Overflow        string        `yaml:"overflow"`
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// AllowEmptyReload lets a reload apply a configuration without any
	// connector or without any sink (an empty file, for one) while the
	// gateway runs some; see WithAllowEmptyReload. It takes effect at once,
	// from the running or the new configuration. Default false.
	AllowEmptyReload bool `yaml:"allow_empty_reload"`
	// ReloadDebounce is how long the watched file must stay unchanged
	// before it is read; see WithConfigDebounce. Zero keeps the default.
	ReloadDebounce time.Duration `yaml:"reload_debounce"`
	// DeadLetter says where frames go that their codec cannot decode
	// (see WithDeadLetter): {sink: name} or {topic: template}.
	DeadLetter DeadLetterConfig `yaml:"dead_letter"`
}

// MQTTConfig is the mqtt: section.
type MQTTConfig struct {
	// QoS for upstream messages; nil keeps the default (1).
	QoS *int `yaml:"qos"`
}

// RulesConfig is the rules: section.
type RulesConfig struct {
	Enabled bool   `yaml:"enabled"`
	Dir     string `yaml:"dir"`
}

// HealthConfig is the health: section.
type HealthConfig struct {
	Address string `yaml:"address"`
	// StatsDevices bounds the per-device entries of each component's
	// counters in /statz; see WithStatsDevices. Absent keeps the default.
	StatsDevices *int `yaml:"stats_devices"`
}

// LogConfig is the log: section. The gateway does not build its logger
// (see WithLogger); a host reads this section to build one.
type LogConfig struct {
	// Format is json (the default in gatewayd: one JSON object per line,
	// with the fixed fields of the observe package's handler) or text.
	Format string `yaml:"format"`
	// Level is debug, info (the default), warn or error.
	Level string `yaml:"level"`
}

// RouteConfig is one entry of routes: (see Route).
type RouteConfig struct {
	Name      string            `yaml:"name"`
	Topic     string            `yaml:"topic"`
	Connector string            `yaml:"connector"`
	Device    string            `yaml:"device"`
	Tags      map[string]string `yaml:"tags"`
	Sinks     []string          `yaml:"sinks"`
}

// ComponentConfig is one entry of connectors:, codecs:, sinks: or store:
// a name, for connectors an optional codec, and exactly one more key: the
// kind, whose value is the kind's own block.
type ComponentConfig struct {
	Name  string
	Codec string
	Kind  string
	Spec  Section
}

// LoadConfig reads and validates a YAML file. The error lists every
// problem found, each with its YAML path, reason and line.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return ParseConfig(data, path)
}

// ParseConfig parses and validates YAML; file names the source in errors.
func ParseConfig(data []byte, file string) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, errEOF) {
			return &Config{file: file, empty: true}, nil
		}
		return nil, fmt.Errorf("config %s: %w", file, err)
	}
	c := &Config{file: file}
	d := &yamlDecoder{file: file}
	top := resolveAlias(&root)
	if !isNull(top) && top.Kind == yaml.MappingNode {
		// Component lists need the custom shape check; decode the rest
		// with the generic decoder.
		for i := 0; i+1 < len(top.Content); i += 2 {
			k, v := top.Content[i], top.Content[i+1]
			switch k.Value {
			case "codecs", "connectors", "sinks":
				list := d.components(v, k.Value)
				switch k.Value {
				case "codecs":
					c.Codecs = list
				case "connectors":
					c.Connectors = list
				default:
					c.Sinks = list
				}
				top.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
			case "store":
				if !isNull(v) {
					cc := d.component(resolveAlias(v), "store", false)
					c.Store = &cc
				}
				top.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}
			}
		}
	}
	if !isNull(top) {
		var plain struct {
			Gateway    GatewayConfig `yaml:"gateway"`
			MQTT       MQTTConfig    `yaml:"mqtt"`
			Rules      RulesConfig   `yaml:"rules"`
			Health     HealthConfig  `yaml:"health"`
			Codecs     Section       `yaml:"codecs"`
			Connectors Section       `yaml:"connectors"`
			Sinks      Section       `yaml:"sinks"`
			Routes     []RouteConfig `yaml:"routes"`
			Store      Section       `yaml:"store"`
			Log        LogConfig     `yaml:"log"`
			Observe    Section       `yaml:"observe"`
		}
		d.decode(top, reflectValue(&plain), "")
		c.Gateway, c.MQTT, c.Rules, c.Health, c.Routes = plain.Gateway, plain.MQTT, plain.Rules, plain.Health, plain.Routes
		c.Log, c.Observe = plain.Log, plain.Observe
	}
	c.validate(d, top)
	if err := d.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// components decodes a list of component entries.
func (d *yamlDecoder) components(n *yaml.Node, path string) []ComponentConfig {
	n = resolveAlias(n)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list, got %s", nodeKind(n))
		return nil
	}
	out := make([]ComponentConfig, 0, len(n.Content))
	seen := map[string]string{}
	for i, e := range n.Content {
		p := fmt.Sprintf("%s[%d]", path, i)
		cc := d.component(resolveAlias(e), p, path == "connectors")
		if cc.Name != "" {
			if prev, dup := seen[cc.Name]; dup {
				d.fail(e, p+".name", "duplicate name %q (also %s)", cc.Name, prev)
			}
			seen[cc.Name] = p
		}
		out = append(out, cc)
	}
	return out
}

func (d *yamlDecoder) component(n *yaml.Node, path string, takesCodec bool) ComponentConfig {
	var cc ComponentConfig
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping with a name and one kind key, got %s", nodeKind(n))
		return cc
	}
	var kinds []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		switch k.Value {
		case "name", "codec":
			if k.Value == "codec" && !takesCodec {
				d.fail(k, joinPath(path, "codec"), "only connectors take a codec")
				continue
			}
			if v.Kind != yaml.ScalarNode || isNull(v) || v.Value == "" {
				d.fail(v, joinPath(path, k.Value), "want a non-empty string")
				continue
			}
			if k.Value == "name" {
				cc.Name = v.Value
			} else {
				cc.Codec = v.Value
			}
		default:
			kinds = append(kinds, k.Value)
			cc.Kind = k.Value
			cc.Spec = Section{node: v, path: joinPath(path, k.Value), file: d.file}
		}
	}
	switch {
	case cc.Name == "" && path != "store":
		d.fail(n, joinPath(path, "name"), "required")
	}
	switch len(kinds) {
	case 0:
		d.fail(n, path, "missing the kind key (for example sim: {})")
	case 1:
	default:
		d.fail(n, path, "more than one kind key: %s", strings.Join(kinds, ", "))
	}
	return cc
}

func (c *Config) validate(d *yamlDecoder, top *yaml.Node) {
	at := func(path string) *yaml.Node { return lookupNode(top, path) }
	g := c.Gateway
	if _, err := ParseMode(g.Mode); err != nil {
		d.fail(at("gateway.mode"), "gateway.mode", "%v", err)
	}
	if g.Overflow != "" {
		if _, err := ParseOverflow(g.Overflow); err != nil {
			d.fail(at("gateway.overflow"), "gateway.overflow", "%v", err)
		}
	}
	for _, f := range []struct {
		key string
		v   int
	}{{"queue_size", g.QueueSize}, {"sink_queue_size", g.SinkQueueSize}, {"workers", g.Workers}, {"batch_size", g.BatchSize}} {
		if f.v < 0 {
			d.fail(at("gateway."+f.key), "gateway."+f.key, "must not be negative")
		}
	}
	if g.BatchSize > 4096 {
		d.fail(at("gateway.batch_size"), "gateway.batch_size", "at most 4096")
	}
	if g.ShutdownTimeout < 0 {
		d.fail(at("gateway.shutdown_timeout"), "gateway.shutdown_timeout", "must not be negative")
	}
	if g.ReloadDebounce < 0 || g.ReloadDebounce > time.Minute {
		d.fail(at("gateway.reload_debounce"), "gateway.reload_debounce", "want 0 (the default) up to 1m, got %v", g.ReloadDebounce)
	}
	if n := c.Health.StatsDevices; n != nil && (*n < 0 || *n > 100000) {
		d.fail(at("health.stats_devices"), "health.stats_devices", "want 0..100000, got %d", *n)
	}
	if dl := g.DeadLetter; dl.Sink != "" || dl.Topic != "" {
		key := "gateway.dead_letter.sink"
		if dl.Topic != "" {
			key = "gateway.dead_letter.topic"
		}
		if err := dl.validate(); err != nil {
			d.fail(at(key), key, "%v", err)
		}
	}
	if g.Mode == "edge" && c.Store == nil {
		d.fail(at("gateway.mode"), "gateway.mode", "edge needs a store: section")
	}
	switch c.Log.Format {
	case "", "json", "text":
	default:
		d.fail(at("log.format"), "log.format", "want json or text, got %q", c.Log.Format)
	}
	if lv := c.Log.Level; lv != "" {
		var l slog.Level
		if err := l.UnmarshalText([]byte(lv)); err != nil {
			d.fail(at("log.level"), "log.level", "want debug, info, warn or error, got %q", lv)
		}
	}
	if q := c.MQTT.QoS; q != nil && (*q < 0 || *q > 2) {
		d.fail(at("mqtt.qos"), "mqtt.qos", "must be 0, 1 or 2, got %d", *q)
	}
	if a := c.Health.Address; a != "" {
		if _, port, err := net.SplitHostPort(a); err != nil {
			d.fail(at("health.address"), "health.address", "want host:port: %v", err)
		} else if port == "" {
			d.fail(at("health.address"), "health.address", "missing port")
		}
	}
	codecs := map[string]bool{"raw": true}
	for _, cc := range c.Codecs {
		codecs[cc.Name] = true
	}
	for i, cc := range c.Connectors {
		if cc.Codec != "" && !codecs[cc.Codec] {
			p := fmt.Sprintf("connectors[%d].codec", i)
			d.fail(at(p), p, "unknown codec %q (defined: %s)", cc.Codec, strings.Join(sortedKeys(codecs), ", "))
		}
	}
	sinks := map[string]bool{}
	for _, s := range c.Sinks {
		sinks[s.Name] = true
	}
	if n := g.DeadLetter.Sink; n != "" && !sinks[n] {
		d.fail(at("gateway.dead_letter.sink"), "gateway.dead_letter.sink", "unknown sink %q", n)
	}
	for i, r := range c.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		if err := ValidateTopicFilter(r.Topic); err != nil {
			d.fail(at(p+".topic"), p+".topic", "%v", err)
		}
		if len(r.Sinks) == 0 {
			d.fail(at(p), p+".sinks", "required")
		}
		for j, s := range r.Sinks {
			if !sinks[s] {
				sp := fmt.Sprintf("%s.sinks[%d]", p, j)
				d.fail(at(sp), sp, "unknown sink %q", s)
			}
		}
	}
}

func equalPtr[T comparable](a, b *T) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// lookupNode finds the node at a dotted path with [i] indexes, for error
// positions; it returns nil when the path is absent.
func lookupNode(n *yaml.Node, path string) *yaml.Node {
	n = resolveAlias(n)
	for _, part := range strings.Split(path, ".") {
		key, idx, hasIdx := part, -1, false
		if i := strings.IndexByte(part, '['); i >= 0 {
			key = part[:i]
			_, _ = fmt.Sscanf(part[i:], "[%d]", &idx)
			hasIdx = true
		}
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				next = resolveAlias(n.Content[i+1])
			}
		}
		n = next
		if hasIdx {
			if n == nil || n.Kind != yaml.SequenceNode || idx < 0 || idx >= len(n.Content) {
				return nil
			}
			n = resolveAlias(n.Content[idx])
		}
	}
	return n
}

// applyStatic maps the sections that shape the gateway itself onto settings.
// They take effect at New only; a reload that changes them is logged.
func (c *Config) applyStatic(s *settings) error {
	g := c.Gateway
	if g.Mode != "" {
		m, _ := ParseMode(g.Mode)
		s.mode = m
	}
	if g.Overflow != "" {
		o, _ := ParseOverflow(g.Overflow)
		s.overflow = o
	}
	if g.QueueSize > 0 {
		s.queueSize = g.QueueSize
	}
	if g.SinkQueueSize > 0 {
		s.sinkQueueSize = g.SinkQueueSize
	}
	if g.Workers > 0 {
		s.workers = g.Workers
	}
	if g.BatchSize > 0 {
		s.batchSize = g.BatchSize
	}
	if g.ShutdownTimeout > 0 {
		s.shutdownTimeout = g.ShutdownTimeout
	}
	if c.MQTT.QoS != nil {
		s.qos = byte(*c.MQTT.QoS)
	}
	if dl := g.DeadLetter; dl != (DeadLetterConfig{}) && s.deadLetter == (DeadLetterConfig{}) {
		s.deadLetter = dl
	}
	if c.Health.Address != "" {
		s.healthAddr = c.Health.Address
	}
	if n := c.Health.StatsDevices; n != nil {
		s.statsDevices = *n
	}
	if g.ReloadDebounce > 0 {
		s.debounce = g.ReloadDebounce
	}
	if c.Store != nil && s.store == nil {
		if s.registry == nil {
			return errors.New("config: store: no registry given (WithRegistry) to build it")
		}
		spec := c.Store.Spec
		spec.logger = s.logger.With("store", c.Store.Kind)
		f := s.registry.stores[c.Store.Kind]
		if f == nil {
			return c.Store.Spec.Errorf("", "unknown store kind %q (this build knows: %s)", c.Store.Kind, strings.Join(sortedKeys(s.registry.stores), ", "))
		}
		st, err := f(spec)
		if err != nil {
			return err
		}
		s.store = st
		s.storeBuilt = true
	}
	return nil
}

// staticDiff names the sections whose change needs a restart.
func (c *Config) staticDiff(o *Config) []string {
	var out []string
	cg, og := c.Gateway, o.Gateway
	cg.AllowEmptyReload, og.AllowEmptyReload = false, false // applies at once
	if cg != og {
		out = append(out, "gateway")
	}
	if c.Health.Address != o.Health.Address || !equalPtr(c.Health.StatsDevices, o.Health.StatsDevices) {
		out = append(out, "health")
	}
	if c.Log != o.Log {
		out = append(out, "log")
	}
	if c.Observe.fingerprint() != o.Observe.fingerprint() {
		out = append(out, "observe")
	}
	if (c.Store == nil) != (o.Store == nil) || c.Store != nil && (c.Store.Kind != o.Store.Kind || c.Store.Spec.fingerprint() != o.Store.Spec.fingerprint()) {
		out = append(out, "store")
	}
	return out
}

// Registry holds the factories that turn configuration blocks into
// components. It is an ordinary value: a host program builds one with the
// kinds it links and hands it to WithRegistry. Not safe for concurrent
// registration; fill it before New.
type Registry struct {
	connectors map[string]ConnectorFactory
	codecs     map[string]CodecFactory
	sinks      map[string]SinkFactory
	stores     map[string]StoreFactory
	rules      RulesFactory
}

// Factories build a component from its kind block. They must not start
// anything (no sockets, no goroutines): the gateway calls Connect when it
// is time, and builds a replacement during reload before deciding to use
// it. Report configuration problems with spec.Errorf, and hand
// spec.Logger() to the component's logger option so it logs through the
// gateway's logger (never set or rely on a global one).
type (
	ConnectorFactory func(name string, spec Section) (DeviceConnector, error)
	CodecFactory     func(name string, spec Section) (Codec, error)
	SinkFactory      func(name string, spec Section) (Sink, error)
	StoreFactory     func(spec Section) (Store, error)
	// RulesFactory builds the Router used when rules.enabled is true;
	// sinks lists the configured sink names.
	RulesFactory func(c RulesConfig, sinks []string) (Router, error)
)

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{
		connectors: map[string]ConnectorFactory{},
		codecs:     map[string]CodecFactory{},
		sinks:      map[string]SinkFactory{},
		stores:     map[string]StoreFactory{},
	}
}

func register[F any](m map[string]F, what, kind string, f F, isNil bool) error {
	if kind == "" || isNil {
		return fmt.Errorf("registry: %s kind %q: empty kind or nil factory", what, kind)
	}
	if _, dup := m[kind]; dup {
		return fmt.Errorf("registry: %s kind %q registered twice", what, kind)
	}
	m[kind] = f
	return nil
}

// AddConnector registers a connector kind.
func (r *Registry) AddConnector(kind string, f ConnectorFactory) error {
	return register(r.connectors, "connector", kind, f, f == nil)
}

// LookupConnector returns the factory registered for a connector kind, or
// nil. A host wraps a kind with it: look the factory up in one registry,
// register a wrapper under the same kind in the registry it uses.
func (r *Registry) LookupConnector(kind string) ConnectorFactory { return r.connectors[kind] }

// AddCodec registers a codec kind.
func (r *Registry) AddCodec(kind string, f CodecFactory) error {
	return register(r.codecs, "codec", kind, f, f == nil)
}

// AddSink registers a sink kind.
func (r *Registry) AddSink(kind string, f SinkFactory) error {
	return register(r.sinks, "sink", kind, f, f == nil)
}

// AddStore registers a store kind.
func (r *Registry) AddStore(kind string, f StoreFactory) error {
	return register(r.stores, "store", kind, f, f == nil)
}

// SetRules installs the rules engine used when rules.enabled is true.
func (r *Registry) SetRules(f RulesFactory) { r.rules = f }

// components is the full desired set of parts: those given as options and
// those from configuration.
type components struct {
	connectors   []namedConnector
	codecs       []namedCodec
	sinks        []namedSink
	routes       []Route
	router       Router
	codecFor     map[string]string
	defaultCodec string
}

func (c components) merge(o components) components {
	out := components{
		connectors:   append(slices.Clip(c.connectors), o.connectors...),
		codecs:       append(slices.Clip(c.codecs), o.codecs...),
		sinks:        append(slices.Clip(c.sinks), o.sinks...),
		routes:       append(slices.Clip(c.routes), o.routes...),
		router:       c.router,
		codecFor:     map[string]string{},
		defaultCodec: c.defaultCodec,
	}
	if o.router != nil {
		out.router = o.router
	}
	for k, v := range c.codecFor {
		out.codecFor[k] = v
	}
	for k, v := range o.codecFor {
		out.codecFor[k] = v
	}
	return out
}

// keeper reports whether a running component with this name and
// fingerprint can be kept as it is.
type keeper func(kind, name, hash string) bool

// components builds the configured parts. Parts that keep reports as
// unchanged are not rebuilt: they come back with a nil implementation and
// their fingerprint, meaning "keep the running one".
func (c *Config) components(reg *Registry, keep keeper, log *slog.Logger) (components, error) {
	var out components
	out.codecFor = map[string]string{}
	needReg := len(c.Connectors)+len(c.Codecs)+len(c.Sinks) > 0 || c.Rules.Enabled
	if needReg && reg == nil {
		return out, errors.New("config: components need a registry (WithRegistry)")
	}
	if reg == nil {
		reg = NewRegistry() // nothing to build: a config of static sections only
	}
	var errs []error
	codecs := buildParts("codec", c.Codecs, reg.codecs, keep, log, &errs)
	sinks := buildParts("sink", c.Sinks, reg.sinks, keep, log, &errs)
	conns := buildParts("connector", c.Connectors, reg.connectors, keep, log, &errs)
	for _, p := range codecs {
		out.codecs = append(out.codecs, namedCodec{name: p.name, codec: p.v, hash: p.hash})
	}
	for _, p := range sinks {
		out.sinks = append(out.sinks, namedSink{name: p.name, sink: p.v, hash: p.hash})
	}
	for _, p := range conns {
		out.connectors = append(out.connectors, namedConnector{name: p.name, conn: p.v, hash: p.hash})
	}
	for _, cc := range c.Connectors {
		if cc.Codec != "" {
			out.codecFor[cc.Name] = cc.Codec
		}
	}
	for _, r := range c.Routes {
		out.routes = append(out.routes, Route(r))
	}
	if c.Rules.Enabled {
		if reg.rules == nil {
			errs = append(errs, &ConfigError{File: c.file, Path: "rules.enabled", Reason: "no rules engine in this build (Registry.SetRules)"})
		} else {
			var names []string
			for _, s := range c.Sinks {
				names = append(names, s.Name)
			}
			rt, err := reg.rules(c.Rules, names)
			if err != nil {
				errs = append(errs, fmt.Errorf("rules: %w", err))
			} else {
				out.router = rt
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Nothing built here will be used: release what holds resources.
		for _, p := range sinks {
			closeIfCloser(discardLogger, "unused sink", p.v)
		}
		for _, p := range conns {
			closeIfCloser(discardLogger, "unused connector", p.v)
		}
		return out, err
	}
	return out, nil
}

// part is one configured component: v is nil when the running one is kept.
type part[T any] struct {
	name, hash string
	v          T
}

// buildParts builds the entries of one component list with their kind's
// factory, skipping those keep reports unchanged. An entry that fails adds
// its error and is left out. Each factory gets log with the entry's kind
// and name attached (Section.Logger).
func buildParts[T any, F ~func(string, Section) (T, error)](what string, entries []ComponentConfig, factories map[string]F, keep keeper, log *slog.Logger, errs *[]error) []part[T] {
	out := make([]part[T], 0, len(entries))
	for _, cc := range entries {
		h := what + "/" + cc.Kind + "/" + cc.Spec.fingerprint()
		if keep(what, cc.Name, h) {
			out = append(out, part[T]{name: cc.Name, hash: h})
			continue
		}
		f := factories[cc.Kind]
		if f == nil {
			*errs = append(*errs, cc.Spec.Errorf("", "unknown %s kind %q (this build knows: %s)", what, cc.Kind, strings.Join(sortedKeys(factories), ", ")))
			continue
		}
		spec := cc.Spec
		spec.logger = log.With(what, cc.Name)
		v, err := f(cc.Name, spec)
		if err != nil {
			*errs = append(*errs, err)
			continue
		}
		out = append(out, part[T]{name: cc.Name, hash: h, v: v})
	}
	return out
}
