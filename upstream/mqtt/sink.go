package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/backoff"
	"github.com/iotgw/gateway/internal/topictmpl"
)

// Config configures an upstream MQTT sink. Zero values take the defaults.
type Config struct {
	// Broker is the broker URL: tcp://host:1883, or ssl:// (also tls://,
	// mqtts://) for TLS. Required.
	Broker string `yaml:"broker"`
	// ClientID must be stable across restarts so the broker keeps the
	// session (clean session is off). Default "iotgw-<sink name>".
	ClientID string `yaml:"client_id"`
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	// Topic is the template of the upstream topic: {device}, {topic},
	// {connector}, {id} and {<tag key>}. Default "gw/{device}/{topic}".
	Topic string `yaml:"topic"`
	// CleanSession starts a fresh session on every connect. Default false:
	// the broker keeps the session and paho resends unacknowledged QoS 1
	// messages after a reconnect.
	CleanSession bool `yaml:"clean_session"`
	// InFlight bounds the QoS 1/2 messages sent and not yet acknowledged.
	// Larger windows hide round-trip time; smaller ones bound what is
	// resent after a failure. Default 64.
	InFlight int `yaml:"in_flight"`
	// KeepAlive is the MQTT keepalive. Default 30s.
	KeepAlive time.Duration `yaml:"keep_alive"`
	// ConnectTimeout bounds one connection attempt. Default 10s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// PublishTimeout bounds the wait for the acknowledgements of one
	// Publish. Default 30s.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// ReconnectMin and ReconnectMax bound the jittered reconnect delay,
	// which doubles per failed attempt. Defaults 100ms and 30s.
	ReconnectMin time.Duration `yaml:"reconnect_min"`
	ReconnectMax time.Duration `yaml:"reconnect_max"`
	// StableAfter is how long a connection must last before the reconnect
	// delay starts again from ReconnectMin, so a flapping link does not
	// hammer the broker. Default 10s.
	StableAfter time.Duration `yaml:"stable_after"`
	// TLS: CA bundle to verify the broker, client certificate and key for
	// mutual TLS, the name to verify (default: the broker host).
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	// CommandTopic, when set, is the prefix of the downlink command topics
	// the sink subscribes to: <prefix>/<connector>/<device>[/<device
	// topic>]. Default "": no commands.
	CommandTopic string `yaml:"command_topic"`
	// ResponseTopic is the prefix command results are published to, as
	// <prefix>/<connector>/<device>. Default "<command_topic>/result".
	ResponseTopic string `yaml:"response_topic"`
	// CommandQueue bounds commands waiting to be written to devices; when
	// full, a command is answered with an error at once. Default 64.
	CommandQueue int `yaml:"command_queue"`
	// CommandTimeout bounds one device write. Default 10s.
	CommandTimeout time.Duration `yaml:"command_timeout"`
}

// CommandWriter writes a command to a device; *gateway.Gateway is one
// (Gateway.Write encodes it with the connector's codec).
type CommandWriter interface {
	Write(ctx context.Context, connector string, m *gateway.Message) error
}

// Option configures a Sink beyond its Config.
type Option func(*Sink)

// WithCommands routes downlink commands received on Config.CommandTopic to
// w. Default: none (commands are answered with an error).
func WithCommands(w CommandWriter) Option { return func(s *Sink) { s.writer = w } }

// WithLogger sets the logger. Default: discard.
func WithLogger(l *slog.Logger) Option { return func(s *Sink) { s.log = l } }

// WithTraceParent sets how the W3C traceparent carried in each envelope is
// made. Default: trace id = message id, span id = its last 8 bytes, until a
// tracer supplies real contexts.
func WithTraceParent(f func(m *gateway.Message) string) Option {
	return func(s *Sink) { s.traceparent = f }
}

// Sink publishes messages to an MQTT broker with paho and, with commands
// configured, carries downlink commands from the broker to devices.
type Sink struct {
	cfg         Config
	opts        *paho.ClientOptions
	tls         *tls.Config
	topic       topictmpl.Template
	log         *slog.Logger
	writer      CommandWriter
	traceparent func(m *gateway.Message) string

	pubMu  sync.Mutex // one Publish at a time keeps per-device order
	buf    []byte
	topicB []byte
	tokens []paho.Token

	mu      sync.Mutex
	client  paho.Client
	down    chan struct{}      // closed when the current connection is lost
	lost    chan struct{}      // wakes the reconnect loop
	stop    <-chan struct{}    // closed by Close
	cancel  context.CancelFunc // ends runCtx and with it stop
	runCtx  context.Context
	started bool
	closed  bool
	wg      sync.WaitGroup

	cmds *commandRunner

	published, failed, reconnects, attempts atomic.Uint64
}

var (
	_ gateway.Sink    = (*Sink)(nil)
	_ gateway.Starter = (*Sink)(nil)
	_ gateway.Checker = (*Sink)(nil)
)

// New validates cfg and returns a sink that connects on Start. name is the
// sink's name, used for the default client id.
func New(name string, cfg Config, opts ...Option) (*Sink, error) {
	if err := cfg.defaults(name); err != nil {
		return nil, err
	}
	s := &Sink{cfg: cfg, log: slog.New(slog.DiscardHandler), traceparent: defaultTraceParent}
	for _, o := range opts {
		o(s)
	}
	t, err := topictmpl.Compile(cfg.Topic, nil)
	if err != nil {
		return nil, fmt.Errorf("mqtt sink %s: topic: %w", name, err)
	}
	s.topic = t
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, fmt.Errorf("mqtt sink %s: %w", name, err)
	}
	o := paho.NewClientOptions().
		AddBroker(cfg.Broker).
		SetClientID(cfg.ClientID).
		SetUsername(cfg.Username).
		SetPassword(cfg.Password).
		SetCleanSession(cfg.CleanSession).
		SetResumeSubs(true).
		SetKeepAlive(cfg.KeepAlive).
		SetConnectTimeout(cfg.ConnectTimeout).
		SetWriteTimeout(cfg.PublishTimeout).
		SetAutoReconnect(false). // our own loop: jittered, reset only once stable
		SetConnectRetry(false).
		// Each connection gets its own client and store (see
		// keepConnected), so paho never resends on its own; the gateway's
		// batch retry does, in order.
		SetStore(paho.NewMemoryStore()).
		SetOrderMatters(false).
		SetConnectionLostHandler(s.connectionLost).
		SetOnConnectHandler(s.connected)
	s.tls = tlsCfg
	o.SetCustomOpenConnectionFn(s.openConnection)
	s.opts = o
	if cfg.CommandTopic != "" {
		s.cmds = newCommandRunner(s)
	}
	return s, nil
}

func (c *Config) defaults(name string) error {
	if c.Broker == "" {
		return errors.New("broker is required")
	}
	u, err := url.Parse(c.Broker)
	if err != nil || u.Host == "" {
		return fmt.Errorf("broker %q: want a URL like tcp://host:1883", c.Broker)
	}
	switch u.Scheme {
	case "tcp", "mqtt", "ssl", "tls", "mqtts", "tcps":
	default:
		return fmt.Errorf("broker %q: unsupported scheme %q (tcp, ssl, tls, mqtts)", c.Broker, u.Scheme)
	}
	if c.ClientID == "" {
		c.ClientID = "iotgw-" + name
	}
	if c.Topic == "" {
		c.Topic = "gw/{device}/{topic}"
	}
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	set(&c.KeepAlive, 30*time.Second)
	set(&c.ConnectTimeout, 10*time.Second)
	set(&c.PublishTimeout, 30*time.Second)
	set(&c.ReconnectMin, 100*time.Millisecond)
	set(&c.ReconnectMax, 30*time.Second)
	set(&c.StableAfter, 10*time.Second)
	set(&c.CommandTimeout, 10*time.Second)
	if c.InFlight <= 0 {
		c.InFlight = 64
	}
	if c.InFlight > 65535 {
		return fmt.Errorf("in_flight %d: at most 65535 (MQTT packet ids)", c.InFlight)
	}
	if c.CommandQueue <= 0 {
		c.CommandQueue = 64
	}
	if strings.ContainsAny(c.CommandTopic, "+#") || strings.ContainsAny(c.ResponseTopic, "+#") {
		return errors.New("command_topic and response_topic are prefixes and must not contain wildcards")
	}
	c.CommandTopic = strings.TrimSuffix(c.CommandTopic, "/")
	if c.ResponseTopic == "" && c.CommandTopic != "" {
		c.ResponseTopic = c.CommandTopic + "/result"
	}
	c.ResponseTopic = strings.TrimSuffix(c.ResponseTopic, "/")
	if c.CommandTopic != "" && strings.HasPrefix(c.ResponseTopic+"/", c.CommandTopic+"/") {
		// <cmd>/result/<connector>/<device> would parse as a command to
		// connector "result"; the subscription skips it explicitly.
		if c.ResponseTopic != c.CommandTopic+"/result" {
			return errors.New("response_topic must not lie under command_topic (except the default <command_topic>/result)")
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return errors.New("cert_file and key_file go together")
	}
	return nil
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	u, _ := url.Parse(c.Broker)
	secure := u.Scheme == "ssl" || u.Scheme == "tls" || u.Scheme == "mqtts" || u.Scheme == "tcps"
	if !secure {
		if c.CAFile != "" || c.CertFile != "" {
			return nil, fmt.Errorf("TLS files given but broker %q is not ssl:// or tls://", c.Broker)
		}
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if t.ServerName == "" {
		t.ServerName = u.Hostname()
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s: no PEM certificates", c.CAFile)
		}
		t.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// Register adds the "mqtt" sink kind to reg. Commands received by sinks
// built from configuration go to w; nil disables them (pass a Downlink and
// Bind the gateway after New when the gateway is the writer).
func Register(reg *gateway.Registry, w CommandWriter, opts ...Option) error {
	return reg.AddSink("mqtt", func(name string, spec gateway.Section) (gateway.Sink, error) {
		var c Config
		if err := spec.Decode(&c); err != nil {
			return nil, err
		}
		o := append([]Option{WithLogger(spec.Logger())}, opts...) // the host's options win
		if w != nil {
			o = append(o, WithCommands(w))
		}
		s, err := New(name, c, o...)
		if err != nil {
			return nil, spec.Errorf("", "%v", err)
		}
		return s, nil
	})
}

// Start connects to the broker. It fails when the first connection
// attempt fails (the gateway retries Start with backoff); once connected,
// the sink reconnects by itself until Close.
func (s *Sink) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("mqtt sink: closed")
	}
	if s.started {
		return nil
	}
	if s.client == nil {
		s.client = paho.NewClient(s.opts)
	}
	s.down = make(chan struct{})
	// An earlier Start whose context ended may have connected since.
	if !s.client.IsConnected() {
		if err := waitToken(ctx, s.client.Connect()); err != nil {
			return fmt.Errorf("mqtt sink: connect %s: %w", s.cfg.Broker, err)
		}
	}
	s.started = true
	s.lost = make(chan struct{}, 1)
	s.runCtx, s.cancel = context.WithCancel(context.Background())
	s.stop = s.runCtx.Done()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.keepConnected()
	}()
	if s.cmds != nil {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.cmds.run(s.runCtx)
		}()
	}
	return nil
}

func waitToken(ctx context.Context, t paho.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// connected runs on every successful connect (paho's goroutine).
func (s *Sink) connected(c paho.Client) {
	if s.cmds != nil {
		// The session keeps the subscription, but a broker that lost its
		// state (or a clean session) needs it again.
		c.Subscribe(s.cfg.CommandTopic+"/#", 1, s.cmds.receive)
	}
}

func (s *Sink) connectionLost(_ paho.Client, err error) {
	s.log.Warn("mqtt sink: connection lost", "broker", s.cfg.Broker, "err", err)
	s.mu.Lock()
	if s.down != nil {
		select {
		case <-s.down:
		default:
			close(s.down)
		}
	}
	lost := s.lost
	s.mu.Unlock()
	if lost != nil {
		select {
		case lost <- struct{}{}:
		default:
		}
	}
}

// keepConnected reconnects after every loss with jittered exponential
// backoff; the delay starts from ReconnectMin again only after a
// connection lasted StableAfter.
func (s *Sink) keepConnected() {
	bo := backoff.Backoff{Min: s.cfg.ReconnectMin, Max: s.cfg.ReconnectMax, Stable: s.cfg.StableAfter}
	bo.Up()
	for {
		select {
		case <-s.stop:
			return
		case <-s.lost:
		}
		for {
			t := time.NewTimer(bo.Next())
			select {
			case <-s.stop:
				t.Stop()
				return
			case <-t.C:
			}
			// A fresh client (and store) per connection: paho would resend
			// the lost connection's in-flight window in map order, ahead of
			// the gateway's in-order retry of the failed batch, and so break
			// per-device order. The batch retry alone resends it in order.
			s.mu.Lock()
			s.down = make(chan struct{})
			s.opts.SetStore(paho.NewMemoryStore())
			s.client = paho.NewClient(s.opts)
			client := s.client
			s.mu.Unlock()
			s.attempts.Add(1)
			tok := client.Connect()
			select {
			case <-s.stop:
				return
			case <-tok.Done():
			}
			if tok.Error() == nil {
				s.reconnects.Add(1)
				bo.Up()
				s.log.Info("mqtt sink: reconnected", "broker", s.cfg.Broker)
				break
			}
			s.log.Debug("mqtt sink: reconnect failed", "broker", s.cfg.Broker, "err", tok.Error())
		}
	}
}

// Publish implements gateway.Sink: every message goes to its topic with
// its own QoS, at most InFlight unacknowledged at a time, and Publish
// returns only when all are acknowledged (PUBACK for QoS 1, PUBCOMP for
// QoS 2; QoS 0 once written). A lost connection fails the batch at once;
// the gateway retries it and the consumer drops duplicates by "id".
func (s *Sink) Publish(ctx context.Context, msgs []*gateway.Message) error {
	s.mu.Lock()
	client, down, started := s.client, s.down, s.started
	s.mu.Unlock()
	if !started {
		return errors.New("mqtt sink: not started")
	}
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.PublishTimeout)
	defer cancel()
	pending := s.tokens[:0]
	defer func() {
		clear(pending)
		s.tokens = pending[:0]
	}()
	wait := func(t paho.Token) error {
		select {
		case <-t.Done():
			return t.Error()
		case <-down:
			return errors.New("connection lost before the broker acknowledged")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	acked := 0
	for _, m := range msgs {
		var err error
		s.topicB, err = s.topic.Append(s.topicB[:0], func(name string) (string, bool) { return lookup(m, name) })
		if err != nil {
			s.failed.Add(1)
			return fmt.Errorf("mqtt sink: message %s from %s: %w", m.ID, m.Device, err)
		}
		s.buf = s.envelope(s.buf[:0], m)
		payload := append([]byte(nil), s.buf...) // paho keeps it until acknowledged
		qos := m.QoS
		if qos > 2 {
			qos = 1
		}
		if len(pending)-acked >= s.cfg.InFlight {
			if err := wait(pending[acked]); err != nil {
				s.failed.Add(1)
				return fmt.Errorf("mqtt sink: publish: %w", err)
			}
			acked++
		}
		pending = append(pending, client.Publish(string(s.topicB), qos, false, payload))
	}
	for ; acked < len(pending); acked++ {
		if err := wait(pending[acked]); err != nil {
			s.failed.Add(1)
			return fmt.Errorf("mqtt sink: publish: %w", err)
		}
	}
	s.published.Add(uint64(len(msgs)))
	return nil
}

func lookup(m *gateway.Message, name string) (string, bool) {
	switch name {
	case "device":
		return m.Device, true
	case "topic":
		return m.Topic, true
	case "connector":
		return m.Connector, true
	case "id":
		return m.ID.String(), true
	}
	return m.Tags.Get(name)
}

// envelope is gateway.Message.AppendJSON with the trace context added:
//
//	{"id":"...", ..., "points":[...],"traceparent":"00-<trace>-<span>-01"}
func (s *Sink) envelope(dst []byte, m *gateway.Message) []byte {
	dst = m.AppendJSON(dst)
	tp := s.traceparent(m)
	if tp == "" {
		return dst
	}
	dst = append(dst[:len(dst)-1], `,"traceparent":"`...)
	dst = append(dst, tp...)
	return append(dst, `"}`...)
}

func defaultTraceParent(m *gateway.Message) string {
	id := m.ID.String()
	return "00-" + id + "-" + id[16:] + "-01"
}

// Check implements gateway.Checker: healthy while connected.
func (s *Sink) Check(context.Context) error {
	s.mu.Lock()
	c := s.client
	s.mu.Unlock()
	if c == nil || !c.IsConnectionOpen() {
		return fmt.Errorf("mqtt sink: not connected to %s", s.cfg.Broker)
	}
	return nil
}

// Stats are the sink's counters.
type Stats struct {
	// Published counts acknowledged messages; Failed counts failed
	// Publish calls.
	Published, Failed uint64
	// Reconnects counts successful reconnects, ReconnectAttempts every try.
	Reconnects, ReconnectAttempts uint64
	CommandsOK, CommandsFailed    uint64
}

// Stats returns the counters.
func (s *Sink) Stats() Stats {
	st := Stats{Published: s.published.Load(), Failed: s.failed.Load(), Reconnects: s.reconnects.Load(), ReconnectAttempts: s.attempts.Load()}
	if s.cmds != nil {
		st.CommandsOK, st.CommandsFailed = s.cmds.ok.Load(), s.cmds.failed.Load()
	}
	return st
}

// StatsReport implements gateway.StatsReporter: the sink's counters by
// name. It has no per-device entries.
func (s *Sink) StatsReport(int) any {
	st := s.Stats()
	return map[string]uint64{
		"published": st.Published, "failed": st.Failed, "reconnects": st.Reconnects,
		"reconnect_attempts": st.ReconnectAttempts, "commands_ok": st.CommandsOK, "commands_failed": st.CommandsFailed,
	}
}

var _ gateway.StatsReporter = (*Sink)(nil)

// Close stops reconnecting and the command worker and disconnects.
func (s *Sink) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	started, client := s.started, s.client
	if started {
		s.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
	if client != nil && client.IsConnected() {
		client.Disconnect(250)
	}
	return nil
}
