package mqtt

import (
	"bytes"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/bufconn"
	"github.com/iotgw/gateway/internal/connstats"
	"github.com/iotgw/gateway/internal/lograte"
	"github.com/iotgw/gateway/internal/tcpkeepalive"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Stats are a connector's counters; see Listener.Stats and Client.Stats.
type Stats = connstats.Stats

// DeviceAuth is one device allowed to connect to the Listener with a
// username and password.
type DeviceAuth struct {
	// Username and Password the device sends in CONNECT. Required.
	Username, Password string
	// Device is the device id on frames. Default: Username.
	Device string
	// Publish and Subscribe override the listener's ACL filters for this
	// device ({device} is replaced by the device id).
	Publish, Subscribe []string
}

// Listener is listener mode: devices connect to the gateway's embedded
// MQTT broker. Every PUBLISH a device sends (and the ACL allows) becomes a
// frame with Device set to the authenticated device id and Topic to the
// MQTT topic. A QoS 1/2 PUBLISH is acknowledged only after the gateway
// accepted the frame; when it does not, an MQTT 5 device gets a PUBACK
// with reason "quota exceeded" and an MQTT 3 device is disconnected so it
// retransmits after reconnecting.
type Listener struct {
	s     listenerSettings // as built; the fields Reconfigure may change are read from live
	stats connstats.Table
	logs  atomic.Pointer[lograte.Limiter] // see logRepeat

	// live holds the settings in force: credentials, ACLs, limits and
	// timeouts (see Reconfigure). reconf orders authentication against
	// their replacement: sessions authenticate and register under the
	// read lock, Reconfigure swaps and re-checks under the write lock.
	live   atomic.Pointer[listenerSettings]
	reconf sync.RWMutex

	mu       sync.Mutex
	run      *listenerRun
	sessions sync.Map // *mochi.Client -> *session
}

type session struct {
	device    string
	login     string   // the username it logged in with, for authBy == authPassword
	authBy    authKind // how the device proved who it is
	acl       atomic.Pointer[sessionACL]
	stats     *connstats.Counters
	takenOver atomic.Bool // another connection took the client id over
	writer    atomic.Bool // the broker's write loop runs
	revoked   atomic.Bool // its credentials were removed or changed (Reconfigure)

	held *bufconn.Held // the connection the broker writes to
	// ahead is the outcome of the PUBLISH the broker is processing when
	// it was delivered ahead (deliverAhead); only the session's worker
	// touches it.
	ahead *aheadOutcome
}

// sessionACL is a session's ACL, {device} expanded.
type sessionACL struct{ publish, subscribe []string }

// authKind is how a session's device authenticated.
type authKind uint8

const (
	authCert authKind = iota
	authPassword
	authAnonymous
)

var (
	_ gateway.DeviceConnector = (*Listener)(nil)
	_ gateway.Downlinker      = (*Listener)(nil)
)

// NewListener builds a listener-mode connector. Nothing listens until
// Connect.
func NewListener(opts ...ListenerOption) (*Listener, error) {
	s := defaultListenerSettings()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&s); err != nil {
			return nil, fmt.Errorf("mqtt listener: %w", err)
		}
	}
	if len(s.users) == 0 && s.tls == nil && !s.anonymous {
		return nil, errors.New("mqtt listener: no way to authenticate devices: add WithDeviceAuth, WithClientCerts or WithAnonymous")
	}
	l := &Listener{s: s}
	l.logs.Store(lograte.New(s.logEvery))
	live := s
	l.live.Store(&live)
	return l, nil
}

// Addr returns the listening address once connected, or nil.
func (l *Listener) Addr() net.Addr {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.run == nil {
		return nil
	}
	return l.run.ln.Addr()
}

// Stats returns the connector's and each device's counters. Reconnects
// counts sessions a device opened after its first; Malformed counts
// PUBLISHes the ACL refused.
func (l *Listener) Stats() Stats { return l.stats.Stats() }

// StatsReport implements gateway.StatsReporter: the totals and at most
// maxDevices devices (see connstats.Report). Denied counts ACL denials.
func (l *Listener) StatsReport(maxDevices int) any { return l.stats.Report(maxDevices) }

// RegisterMetrics implements gateway.MetricsSource: the connector's totals
// (frames, bytes, problems by reason, sessions, mean latency).
func (l *Listener) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	return l.stats.RegisterMetrics(m, label...)
}

var _ gateway.StatsReporter = (*Listener)(nil)

// Sessions returns the number of connected device sessions.
func (l *Listener) Sessions() int {
	n := 0
	l.sessions.Range(func(any, any) bool { n++; return true })
	return n
}

// Connect starts the broker.
func (l *Listener) Connect(ctx context.Context, up gateway.Uplink) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.run != nil {
		return errors.New("mqtt listener: already connected")
	}
	l.checkFileLimit(l.live.Load().maxSessions)
	ln := l.s.listener
	if ln == nil {
		lc := net.ListenConfig{KeepAliveConfig: tcpkeepalive.Config()}
		var err error
		if ln, err = lc.Listen(ctx, "tcp", l.s.addr); err != nil {
			return fmt.Errorf("mqtt listener: listen %s: %w", l.s.addr, err)
		}
		if l.s.tls != nil {
			ln = tls.NewListener(ln, l.s.tls)
		}
	}
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumClients = int64(l.s.maxSessions)
	caps.MaximumClientWritesPending = l.s.writesPending
	caps.MaximumSessionExpiryInterval = uint32(l.s.sessionExpiry / time.Second)
	caps.MaximumPacketSize = l.s.maxPacket
	caps.MaximumInflight = 64
	caps.ReceiveMaximum = 64
	caps.RetainAvailable = 0
	// Acknowledgements carry no properties of the packet they answer
	// (the broker copies them by default, user properties included).
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	srv := mochi.New(&mochi.Options{
		Capabilities: caps,
		// The session loop reads through its own buffer (session.go);
		// the broker's per-client reader is never used.
		ClientNetReadBufferSize:  16,
		ClientNetWriteBufferSize: l.s.readBuffer,
		Logger:                   slog.New(brokerLog{l.s.logger.Handler(), &l.logs}),
		InlineClient:             true,
		SysTopicResendInterval:   3600,
	})
	runCtx, cancel := context.WithCancel(context.Background())
	run := &listenerRun{srv: srv, ln: ln, cancel: cancel, hook: &listenerHook{l: l, up: up, ctx: runCtx}}
	if err := srv.AddHook(run.hook, nil); err != nil {
		cancel()
		_ = ln.Close()
		return fmt.Errorf("mqtt listener: %w", err)
	}
	if err := srv.Serve(); err != nil {
		cancel()
		_ = ln.Close()
		_ = srv.Close()
		return fmt.Errorf("mqtt listener: %w", err)
	}
	run.wg.Add(1)
	go l.acceptLoop(run)
	l.run = run
	return nil
}

// Disconnect closes the listener and every device session, and waits for
// the sessions to end (bounded by ctx).
//
// The sessions are ended here rather than by the embedded broker's Close,
// which waits for them without a bound and, in mochi-mqtt v2.7.9, can
// deadlock when a session ends while it lists them (it takes the client
// table's read lock twice). The broker is closed once no session is left.
func (l *Listener) Disconnect(ctx context.Context) error {
	l.mu.Lock()
	run := l.run
	l.run = nil
	l.mu.Unlock()
	if run == nil {
		return nil
	}
	run.cancel()       // ends deliveries in flight
	_ = run.ln.Close() // no new sessions
	done := make(chan struct{})
	go func() { run.wg.Wait(); close(done) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		// Again on every tick: a connection accepted just before the
		// listener closed joins a moment later. Sessions stop with their
		// cause; connections still before CONNECT are closed.
		l.sessions.Range(func(k, _ any) bool {
			k.(*mochi.Client).Stop(packets.ErrServerShuttingDown)
			return true
		})
		run.conns.Range(func(k, _ any) bool {
			_ = k.(net.Conn).Close()
			return true
		})
		select {
		case <-done:
			_ = run.srv.Close()
			return nil
		case <-ctx.Done():
			return fmt.Errorf("mqtt listener: disconnect: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// Write implements gateway.Downlinker: it publishes the payload to the
// command topic of f.Device (WithCommandTopic; by default
// "devices/{device}/cmd/{topic}" with {topic} = f.Topic) at the command
// QoS. Devices subscribed there receive it; the write does not wait for
// the device.
func (l *Listener) Write(_ context.Context, f *gateway.Frame) error {
	l.mu.Lock()
	run := l.run
	l.mu.Unlock()
	if run == nil {
		return fmt.Errorf("mqtt listener: write %s: %w", f.Device, gateway.ErrClosed)
	}
	srv := run.srv
	cur := l.live.Load()
	topic := commandTopic(cur.commandTopic, f.Device, f.Topic)
	if f.Device == "" || !validPublishTopic(topic) {
		return fmt.Errorf("mqtt listener: write %s: invalid command topic %q", f.Device, topic)
	}
	if err := srv.Publish(topic, bytes.Clone(f.Payload), false, cur.commandQoS); err != nil {
		return fmt.Errorf("mqtt listener: write %s to %s: %w", f.Device, topic, err)
	}
	return nil
}

// listenerHook enforces the ACLs and turns PUBLISHes into frames; the
// session loop (session.go) authenticates devices.
type listenerHook struct {
	mochi.HookBase
	l   *Listener
	up  gateway.Uplink
	ctx context.Context
}

// hookID names the connector's hook inside the embedded broker.
const hookID = "iotgw-devices"

func (h *listenerHook) ID() string { return hookID }

func (h *listenerHook) Provides(b byte) bool {
	switch b {
	case mochi.OnACLCheck, mochi.OnPublish, mochi.OnPacketEncode:
		return true
	}
	return false
}

// identify returns the session of a connecting client, with its device
// id and ACLs, or false. Called under l.reconf's read lock.
func (h *listenerHook) identify(cl *mochi.Client, pk packets.Packet) (*session, bool) {
	s := h.l.live.Load()
	var ss *session
	if tc, ok := bufconn.Unwrap(cl.Net.Conn).(*tls.Conn); ok && s.tls != nil {
		st := tc.ConnectionState()
		if len(st.PeerCertificates) > 0 && st.PeerCertificates[0].Subject.CommonName != "" {
			ss = &session{device: st.PeerCertificates[0].Subject.CommonName, authBy: authCert}
		}
	}
	if u, ok := s.users[string(pk.Connect.Username)]; ss == nil && ok {
		if subtle.ConstantTimeCompare(pk.Connect.Password, []byte(u.Password)) != 1 {
			return nil, false
		}
		ss = &session{device: u.Device, login: u.Username, authBy: authPassword}
	}
	if ss == nil && s.anonymous && cl.ID != "" {
		ss = &session{device: cl.ID, authBy: authAnonymous}
	}
	if ss == nil {
		return nil, false
	}
	ss.acl.Store(s.aclFor(ss))
	return ss, true
}

// aclFor returns the ACL of ss under settings s: its user's filters when
// it logged in with a username that has its own, the listener's otherwise.
func (s *listenerSettings) aclFor(ss *session) *sessionACL {
	pub, sub := s.publish, s.subscribe
	if ss.authBy == authPassword {
		u := s.users[ss.login]
		if u.Publish != nil {
			pub = u.Publish
		}
		if u.Subscribe != nil {
			sub = u.Subscribe
		}
	}
	return &sessionACL{publish: expand(pub, ss.device), subscribe: expand(sub, ss.device)}
}

func (h *listenerHook) session(cl *mochi.Client) *session {
	v, ok := h.l.sessions.Load(cl)
	if !ok {
		return nil
	}
	return v.(*session)
}

func (h *listenerHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	ss := h.session(cl)
	if ss == nil {
		return false
	}
	var ok bool
	if acl := ss.acl.Load(); write {
		ok = allowed(acl.publish, topic, false)
	} else {
		ok = allowed(acl.subscribe, topic, true)
	}
	if !ok {
		ss.stats.Error()
		h.l.stats.Total.Error()
		ss.stats.Denied()
		h.l.stats.Total.Denied()
		op := "subscribe"
		if write {
			op = "publish"
		}
		h.l.logRepeat(slog.LevelWarn, "acl:"+op+":"+ss.device, "mqtt ACL denied", "device", ss.device, "topic", topic, "op", op)
	}
	return ok
}

func (h *listenerHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // downlink commands from the gateway itself
	}
	ss := h.session(cl)
	if ss == nil {
		return pk, packets.ErrRejectPacket
	}
	v5 := cl.Properties.ProtocolVersion == 5
	var err error
	if a := ss.ahead; a != nil {
		ss.ahead = nil // delivered with its batch: the outcome is known
		err = a.err
		if err == nil {
			ss.stats.Frame(a.n)
			ss.stats.Latency(a.lat)
			h.l.stats.Total.Frame(a.n)
			return pk, nil
		}
	} else {
		f := gateway.AcquireFrame()
		f.Device, f.Topic = ss.device, listenerFrameTopic(pk.TopicName, ss.device)
		f.Payload = append(f.Payload[:0], pk.Payload...)
		if v5 && len(pk.Properties.User) > 0 {
			f.Trace = userPropertyTrace(pk.Properties.User)
		}
		n := len(f.Payload)
		ctx, cancel := context.WithTimeout(h.ctx, h.l.live.Load().deliverTimeout)
		start := time.Now()
		if v5 && pk.FixedHeader.Qos > 0 {
			// MQTT 5 can refuse a payload in the PUBACK: decode first.
			err = gateway.DeliverChecked(ctx, h.up, f)
		} else {
			err = h.up.Deliver(ctx, f)
		}
		cancel()
		lat := time.Since(start)
		if err == nil {
			ss.stats.Frame(n)
			ss.stats.Latency(lat)
			h.l.stats.Total.Frame(n)
			return pk, nil
		}
	}
	ss.stats.Error()
	h.l.stats.Total.Error()
	reason := refusalReason(err)
	h.l.logRepeat(slog.LevelWarn, "refused:"+reason+":"+ss.device, "mqtt message not accepted",
		"device", ss.device, "topic", pk.TopicName, "reason", reason, "err", err)
	if pk.FixedHeader.Qos == 0 {
		return pk, packets.ErrRejectPacket
	}
	if v5 && errors.Is(err, gateway.ErrMalformedPayload) {
		return pk, packets.ErrPayloadFormatInvalid
	}
	if v5 {
		return pk, packets.ErrQuotaExceeded
	}
	// MQTT 3 has no negative PUBACK: drop the session so the device
	// retransmits the unacknowledged message after reconnecting.
	cl.Stop(packets.ErrServerBusy)
	return pk, packets.ErrRejectPacket
}

// OnPacketEncode corrects what the embedded broker writes: it answers a
// QoS 1 PUBLISH with the SUBACK code "granted QoS 1" (0x01), which is not a
// PUBACK reason code; a successful PUBACK has reason 0x00.
func (h *listenerHook) OnPacketEncode(_ *mochi.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Puback && pk.ReasonCode == packets.CodeGrantedQos1.Code {
		pk.ReasonCode = packets.CodeSuccess.Code
	}
	return pk
}

// refusalReason names why the gateway did not accept a frame, in a word
// that keys the log's repeat counting.
func refusalReason(err error) string {
	switch {
	case errors.Is(err, gateway.ErrDropped):
		return "queue_full"
	case errors.Is(err, gateway.ErrClosed):
		return "closed"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

// brokerLog is the embedded broker's log: warnings and errors only, a
// packet attribute reduced to its type, topic and size (the broker logs
// whole packet structs, kilobytes each), and repeats counted per message
// and client (see WithLogInterval). The broker's "publish packet error"
// after this connector refused a PUBLISH is dropped: the connector has
// already logged the cause.
type brokerLog struct {
	slog.Handler
	logs *atomic.Pointer[lograte.Limiter]
}

func (b brokerLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelWarn && b.Handler.Enabled(ctx, l)
}

func (b brokerLog) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	key, ours := r.Message, false
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "hook":
			ours = a.Value.String() == hookID
		case "client":
			key += ":" + a.Value.String()
		}
		if pk, ok := a.Value.Any().(packets.Packet); ok {
			a = slog.Group(a.Key, "type", packets.PacketNames[pk.FixedHeader.Type], "topic", pk.TopicName, "bytes", pk.FixedHeader.Remaining)
		}
		out.AddAttrs(a)
		return true
	})
	if ours && r.Message == "publish packet error" {
		return nil
	}
	ok, n := b.logs.Load().Allow("broker:" + key)
	if !ok {
		return nil
	}
	if n > 0 {
		out.AddAttrs(slog.Uint64("suppressed", n))
	}
	return b.Handler.Handle(ctx, out)
}

func (b brokerLog) WithAttrs(as []slog.Attr) slog.Handler {
	return brokerLog{b.Handler.WithAttrs(as), b.logs}
}
func (b brokerLog) WithGroup(g string) slog.Handler { return brokerLog{b.Handler.WithGroup(g), b.logs} }
