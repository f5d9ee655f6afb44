package coap

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/dtlsx"
	"github.com/iotgw/gateway/internal/udpbatch"
)

// Option configures a Connector.
type Option func(*settings) error

// Observe is a device resource the connector observes (RFC 7641).
type Observe struct {
	// Device names the device on frames. Required.
	Device string
	// Address is the device's host:port. Required.
	Address string
	// Path is the resource path, e.g. "/sensors/temp". Required.
	Path string
	// Topic is the frame topic. Default: Path without the leading '/'.
	Topic string
	// Refresh re-registers the observation when no notification arrived
	// for this long (a restarted device forgets its observers). Default
	// 2m.
	Refresh time.Duration
}

type settings struct {
	addr           string
	packetConn     *net.UDPConn
	connListener   ConnListener
	prefix         string
	maxBody        int64
	deliverTimeout time.Duration
	window         int
	requestTimeout time.Duration
	ackTimeout     time.Duration
	blockTimeout   time.Duration
	keepAlive      time.Duration
	backoffMin     time.Duration
	backoffMax     time.Duration
	observes       []Observe
	addresses      map[string]string
	downlinkPut    bool
	logger         *slog.Logger
	fastPath       bool
	readers        int
	udpBatch       int
	dedupEntries   int
	passQueue      int
	sessionIdle    time.Duration
	dtls           bool
	dtlsOpts       []dtlsx.Option
	identities     map[string][]string // DTLS identity -> devices it may send as
	anonymousDTLS  bool
	sessionStore   string // SQLite file of sealed DTLS sessions; "" keeps them in memory
	sessionRing    *dtlsx.KeyRing
	sessionOpts    []dtlsx.CacheOption
}

func defaultSettings() settings {
	return settings{
		addr:           "127.0.0.1:5683",
		prefix:         "devices",
		maxBody:        64 << 10,
		deliverTimeout: 2 * time.Second,
		window:         gateway.DefaultInflightWindow,
		requestTimeout: 10 * time.Second,
		ackTimeout:     2 * time.Second,
		blockTimeout:   30 * time.Second,
		keepAlive:      30 * time.Second,
		backoffMin:     200 * time.Millisecond,
		backoffMax:     30 * time.Second,
		addresses:      map[string]string{},
		logger:         slog.Default(),
		fastPath:       true,
		readers:        max(2, runtime.GOMAXPROCS(0)),
		udpBatch:       16,
		dedupEntries:   32 << 10,
		passQueue:      32,
		sessionIdle:    5 * time.Minute,
	}
}

// WithAddress sets the UDP address of the server. Default
// "127.0.0.1:5683" (loopback only: widen it deliberately). "" turns the
// server off, leaving observers and downlink.
func WithAddress(addr string) Option {
	return func(s *settings) error {
		if addr != "" {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return fmt.Errorf("address %q: %v", addr, err)
			}
		}
		s.addr = addr
		return nil
	}
}

// WithPacketConn serves on an existing UDP socket instead of the address.
// The connector closes it on Disconnect.
func WithPacketConn(pc *net.UDPConn) Option {
	return func(s *settings) error {
		if pc == nil {
			return fmt.Errorf("nil packet conn")
		}
		s.packetConn = pc
		return nil
	}
}

// WithConnListener serves CoAP over the conns ln accepts, one per peer,
// instead of plain UDP: this is how a DTLS listener plugs in. If a conn
// has a HandshakeContext method, it is called before serving.
func WithConnListener(ln ConnListener) Option {
	return func(s *settings) error {
		if ln == nil {
			return fmt.Errorf("nil listener")
		}
		s.connListener = ln
		return nil
	}
}

// WithFastPath turns the plain-UDP fast path on (the default) or off.
// With it, the connector's own readers answer confirmable and
// non-confirmable POST/PUT requests that carry no Block1, Block2, Observe
// or other option they do not know, with their own duplicate detection;
// everything else (GET, block-wise, Observe, pings) is served by go-coap
// on the same socket. Off, go-coap's UDP server reads every datagram,
// which costs several times more CPU per request (see BENCHMARKS.md).
// DTLS and WithConnListener always use go-coap.
func WithFastPath(on bool) Option {
	return func(s *settings) error {
		s.fastPath = on
		return nil
	}
}

// WithReaders sets how many goroutines read the plain-UDP socket on the
// fast path. Each blocks while the gateway decides on its frame, so more
// readers keep a slow pipeline (Block overflow policy) from holding up
// other devices, at the cost of a 64 KiB buffer each. Default: the number
// of CPUs, at least 2.
func WithReaders(n int) Option {
	return func(s *settings) error {
		if n < 1 || n > 256 {
			return fmt.Errorf("readers must be 1..256")
		}
		s.readers = n
		return nil
	}
}

// WithUDPBatch sets how many datagrams a fast-path reader takes from the
// socket per system call (recvmmsg on Linux) and how many answers it sends
// per call (sendmmsg): the answers to one batch go out together once its
// frames were delivered, so a request waits for those before it in its
// batch. 1 reads and writes one datagram per call, as on platforms
// without the batched calls, where larger values fall back to it. Each
// reader keeps n buffers of the largest accepted request (WithMaxBody plus
// 1 KiB, at most 64 KiB; the kernel touches only the bytes it writes) and
// answers a longer confirmable request 4.13. Default 16.
func WithUDPBatch(n int) Option {
	return func(s *settings) error {
		if n < 1 || n > udpbatch.MaxBatch {
			return fmt.Errorf("udp batch must be 1..%d", udpbatch.MaxBatch)
		}
		s.udpBatch = n
		return nil
	}
}

// WithDuplicateCache sets how many recent requests the fast path
// remembers to recognise a retransmission (RFC 7252 4.5: same peer and
// message id), each for the RFC lifetime (247s confirmable, 145s
// non-confirmable) or until newer ones push it out, oldest first. A
// retransmission whose entry is gone is delivered again (at-least-once).
// About 190 bytes per entry (measured). Default 32768 (about 6 MB when
// full): that covers the 45s in which devices retransmit (RFC 7252
// MAX_TRANSMIT_SPAN) up to 728 requests/s, and the whole 247s lifetime
// up to 132 requests/s; raise it for busier gateways.
func WithDuplicateCache(entries int) Option {
	return func(s *settings) error {
		if entries < dedupShards || entries > 16<<20 {
			return fmt.Errorf("duplicate cache must hold %d..%d entries", dedupShards, 16<<20)
		}
		s.dedupEntries = entries
		return nil
	}
}

// WithSessionIdle sets after how long without a datagram go-coap ends a
// device session (its retransmission cache and block-wise state; over
// DTLS also the DTLS connection). Default 5m, above the 247s exchange
// lifetime.
func WithSessionIdle(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("session idle must be positive")
		}
		s.sessionIdle = d
		return nil
	}
}

// WithDTLS serves CoAP over DTLS 1.2 (coaps) on the address (or the
// WithPacketConn socket) through a dtlsx listener built from opts at
// Connect, e.g. dtlsx.WithPSK(table) and dtlsx.WithPSKHint. The plain-UDP
// fast path does not apply; go-coap serves every request. The listener's
// counters are on Connector.DTLSStats. Default: plain UDP.
func WithDTLS(opts ...dtlsx.Option) Option {
	return func(s *settings) error {
		s.dtls = true
		s.dtlsOpts = append(s.dtlsOpts, opts...)
		return nil
	}
}

// WithDTLSSessionStore keeps resumable DTLS sessions in the SQLite file
// at path (created if needed, shareable by gateways on one host), sealed
// with AES-GCM under ring, so that devices resume their sessions (an
// abbreviated handshake, no key exchange) after a gateway restart. The
// connector opens the store at Connect, drops expired rows then, and
// closes it at Disconnect after flushing queued writes; opts tune the
// cache (dtlsx.WithTTL, default 24h; dtlsx.WithCapacity; dtlsx.WithSessionPSK
// to drop sessions of a changed PSK). Default: the listener's memory-only
// cache, which a restart empties, so every device makes a full handshake
// again. Trade-off: a store load waits at most 200ms (dtlsx.WithStoreTimeout)
// on a memory miss, and whoever holds the file and the ring's keys can
// resume a device's session: protect the key file (dtlsx.LoadKeyRingFile).
// Needs WithDTLS.
func WithDTLSSessionStore(path string, ring *dtlsx.KeyRing, opts ...dtlsx.CacheOption) Option {
	return func(s *settings) error {
		if path == "" || ring == nil {
			return fmt.Errorf("dtls session store: needs a path and a key ring")
		}
		s.sessionStore, s.sessionRing, s.sessionOpts = path, ring, opts
		return nil
	}
}

// WithIdentityDevices lets the DTLS identity (a PSK identity, or the
// subject common name of a client certificate the listener verified with
// dtlsx.WithClientCAs) send as the listed devices, and only those.
//
// Over DTLS the identity the handshake authenticated decides which device
// a request may send as, as the MQTT listener's credentials and the HTTP
// connector's tokens do. By default an identity is the device of the same
// name: PSK identity "sensor-1" may POST or PUT to /devices/sensor-1/...
// and gets 4.03 Forbidden for any other device. Give the identity of a
// device that relays others (or whose name differs from its device id) its
// devices here; list the identity itself too if it also sends as itself.
// Refusals count in Stats().Total.Denied (and Errors) and are logged once
// a minute per identity and device. PSK identities and certificate names
// share one namespace. Block-wise transfers are checked once reassembled.
// Plain UDP authenticates nobody, so it needs WithDTLS or WithConnListener
// (whose conns are checked when they expose DTLS state, as *dtls.Conn
// does).
func WithIdentityDevices(identity string, devices ...string) Option {
	return func(s *settings) error {
		if identity == "" {
			return fmt.Errorf("identity devices: empty identity")
		}
		if len(devices) == 0 {
			return fmt.Errorf("identity %q: no devices", identity)
		}
		for _, d := range devices {
			if _, _, err := ParsePath("", "/"+d+"/t"); err != nil || strings.Contains(d, "/") {
				return fmt.Errorf("identity %q: invalid device %q", identity, d)
			}
		}
		if s.identities == nil {
			s.identities = map[string][]string{}
		}
		s.identities[identity] = append(s.identities[identity], devices...)
		return nil
	}
}

// WithAnonymousDTLS accepts requests from DTLS peers the handshake did not
// identify (a certificate suite without a client certificate), for any
// device. Default false: they get 4.01 Unauthorized, counted like a
// refused identity, because otherwise a peer could skip the PSK (when the
// listener also has a certificate) and send as any device. Turn it on only
// where DTLS serves for encryption alone and the network is trusted.
func WithAnonymousDTLS(on bool) Option {
	return func(s *settings) error {
		s.anonymousDTLS = on
		return nil
	}
}

// WithPathPrefix sets the first path segment of ingest resources: devices
// send to /<prefix>/<device>/<topic...>. Default "devices"; "" means
// /<device>/<topic...>.
func WithPathPrefix(p string) Option {
	return func(s *settings) error {
		s.prefix = p
		return nil
	}
}

// WithMaxBody sets the largest accepted payload (after block-wise
// reassembly); bigger ones get 4.13. Default 64 KiB.
func WithMaxBody(n int64) Option {
	return func(s *settings) error {
		if n <= 0 || n > 16<<20 {
			return fmt.Errorf("max body must be 1..16 MiB")
		}
		s.maxBody = n
		return nil
	}
}

// WithInflightWindow bounds how many requests' frames the connector hands
// to the gateway together: the requests of all peers deliver through one
// gateway.Pipeline, in batches (in edge mode one Store commit per batch),
// and each is answered 2.04 once its own frame is accepted. Requests
// beyond the window wait for room, within the deliver timeout. Default 64
// (gateway.DefaultInflightWindow); 1 delivers one request at a time.
func WithInflightWindow(n int) Option {
	return func(s *settings) error {
		if n <= 0 {
			return fmt.Errorf("in-flight window must be positive")
		}
		s.window = n
		return nil
	}
}

// WithTimeouts sets how long a request waits for the gateway to accept
// its frame before answering 5.03 (default 2s, below the CoAP ACK
// timeout of devices), the timeout of requests the connector sends
// (observe registration, downlink; default 10s), and of a block-wise
// transfer (default 30s).
func WithTimeouts(deliver, request, blockwise time.Duration) Option {
	return func(s *settings) error {
		if deliver <= 0 || request <= 0 || blockwise <= 0 {
			return fmt.Errorf("timeouts must be positive")
		}
		s.deliverTimeout, s.requestTimeout, s.blockTimeout = deliver, request, blockwise
		return nil
	}
}

// WithKeepAlive sets the ping interval to observed and downlink devices;
// three missed pings close the session and the observer re-registers.
// Default 30s.
func WithKeepAlive(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("keepalive must be positive")
		}
		s.keepAlive = d
		return nil
	}
}

// WithBackoff sets the re-registration delay range of observers
// (exponential, full jitter, reset after 10s registered). Default
// 200ms..30s.
func WithBackoff(min, max time.Duration) Option {
	return func(s *settings) error {
		if min <= 0 || max < min {
			return fmt.Errorf("backoff: want 0 < min <= max")
		}
		s.backoffMin, s.backoffMax = min, max
		return nil
	}
}

// WithObserve adds a device resource to observe. The device's address is
// also used for downlink unless WithDeviceAddress sets another.
func WithObserve(o Observe) Option {
	return func(s *settings) error {
		if o.Device == "" || o.Address == "" || o.Path == "" {
			return fmt.Errorf("observe: device, address and path are required")
		}
		if _, _, err := net.SplitHostPort(o.Address); err != nil {
			return fmt.Errorf("observe %s: address %q: %v", o.Device, o.Address, err)
		}
		if o.Topic == "" {
			o.Topic = trimSlash(o.Path)
		}
		if o.Refresh <= 0 {
			o.Refresh = 2 * time.Minute
		}
		s.observes = append(s.observes, o)
		if _, ok := s.addresses[o.Device]; !ok {
			s.addresses[o.Device] = o.Address
		}
		return nil
	}
}

func trimSlash(p string) string {
	for len(p) > 0 && p[0] == '/' {
		p = p[1:]
	}
	return p
}

// WithDeviceAddress sets where downlink writes to device go.
func WithDeviceAddress(device, addr string) Option {
	return func(s *settings) error {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("device %s: address %q: %v", device, addr, err)
		}
		s.addresses[device] = addr
		return nil
	}
}

// WithDownlinkMethod picks PUT (true) or POST (false, the default) for
// downlink writes.
func WithDownlinkMethod(put bool) Option {
	return func(s *settings) error {
		s.downlinkPut = put
		return nil
	}
}

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(s *settings) error {
		if l == nil {
			return fmt.Errorf("nil logger")
		}
		s.logger = l
		return nil
	}
}

// Config is the YAML block of the "coap" connector kind:
//
//	coap:
//	  address: 0.0.0.0:5683
//	  path_prefix: devices
//	  max_body: 65536
//	  deliver_timeout: 2s
//	  downlink_method: post      # or put
//	  devices: {valve-1: "10.0.0.7:5683"}
//	  observe:
//	    - {device: meter-1, address: "10.0.0.8:5683", path: /energy, topic: energy, refresh: 2m}
type Config struct {
	Address        *string           `yaml:"address"`
	PathPrefix     *string           `yaml:"path_prefix"`
	MaxBody        int64             `yaml:"max_body"`
	DeliverTimeout time.Duration     `yaml:"deliver_timeout"`
	InflightWindow int               `yaml:"inflight_window"`
	KeepAlive      time.Duration     `yaml:"keepalive"`
	DownlinkMethod string            `yaml:"downlink_method"`
	Devices        map[string]string `yaml:"devices"`
	Observe        []ObserveConfig   `yaml:"observe"`
	FastPath       *bool             `yaml:"fast_path"`
	// UDPBatch is WithUDPBatch: datagrams per system call on the fast
	// path (default 16; 1 reads and writes one at a time).
	UDPBatch       int         `yaml:"udp_batch"`
	DuplicateCache int         `yaml:"duplicate_cache"`
	DTLS           *DTLSConfig `yaml:"dtls"`
}

// DTLSConfig is the dtls: block: the credentials devices use for coaps.
// At least a PSK file or a certificate and key is required.
//
//	dtls:
//	  psk_file: /etc/gw/psk.txt                  # "identity hexkey" lines
//	  cert_file: /etc/gw/server.pem              # optional, with key_file
//	  key_file: /etc/gw/server.key
//	  client_ca_file: /etc/gw/devices-ca.pem     # require device certificates
//	  identities: {bridge-1: [meter-7, meter-8]} # else identity = device
//	  session_store: /var/lib/gw/dtls-sessions.db
//	  session_keys: /etc/gw/dtls-session.keys    # "id hexkey" lines, mode 0600
//	  session_ttl: 24h
type DTLSConfig struct {
	PSKFile      string `yaml:"psk_file"`
	IdentityHint string `yaml:"identity_hint"`
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	// ClientCAFile (PEM) makes the listener require a device certificate
	// chained to these CAs (dtlsx.WithClientCAs); its subject common name
	// is the device's identity. Default: no client certificates.
	ClientCAFile string `yaml:"client_ca_file"`
	// Identities lists the devices an identity (PSK identity or
	// certificate common name) may send as (WithIdentityDevices). An
	// identity not listed is the device of the same name.
	Identities map[string][]string `yaml:"identities"`
	// Anonymous accepts peers without an identity for any device
	// (WithAnonymousDTLS). Default false: 4.01.
	Anonymous bool `yaml:"anonymous"`
	// SessionStore is the SQLite file that keeps sealed sessions across
	// restarts (WithDTLSSessionStore); SessionKeys the key ring file that
	// seals them (dtlsx.LoadKeyRingFile), both or neither. Default: a
	// memory cache a restart empties.
	SessionStore string `yaml:"session_store"`
	SessionKeys  string `yaml:"session_keys"`
	// SessionTTL is how long a session stays resumable (dtlsx.WithTTL;
	// default 24h).
	SessionTTL       time.Duration `yaml:"session_ttl"`
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	// FastResumption false sends resumed handshakes through pion's
	// handshake instead of the listener's own (dtlsx.WithFastResumption;
	// default true).
	FastResumption *bool `yaml:"fast_resumption"`
	// OwnRecords false hands sessions the listener resumed to pion's
	// record layer instead of dtlsx's own (dtlsx.WithOwnRecords; default
	// true).
	OwnRecords *bool `yaml:"own_records"`
	// MaxFullHandshakes bounds certificate handshakes past the cookie
	// exchange (dtlsx.WithMaxFullHandshakes). By default 4 per handshake
	// worker while established sessions carry traffic, 64 otherwise.
	// Raise it for devices behind high-latency links.
	MaxFullHandshakes int `yaml:"max_full_handshakes"`
	// HandshakeWorkers bounds handshake steps running at once
	// (dtlsx.WithHandshakeWorkers). By default one fewer than GOMAXPROCS
	// (at least 1) while established sessions carry traffic, GOMAXPROCS
	// otherwise.
	HandshakeWorkers int `yaml:"handshake_workers"`
}

// options turns the block into connector options, reading the files now
// so a bad file is a config error, not a failure at Connect. Errors start
// with the key they are about.
func (d *DTLSConfig) options() ([]Option, error) {
	var opts []dtlsx.Option
	var copts []Option
	var cacheOpts []dtlsx.CacheOption
	if d.PSKFile == "" && d.CertFile == "" {
		return nil, fmt.Errorf("want psk_file, or cert_file and key_file")
	}
	if d.PSKFile != "" {
		tbl, err := dtlsx.LoadPSKFile(d.PSKFile)
		if err != nil {
			return nil, fmt.Errorf("psk_file: %w", err)
		}
		opts = append(opts, dtlsx.WithPSK(tbl))
		cacheOpts = append(cacheOpts, dtlsx.WithSessionPSK(tbl))
	}
	if d.IdentityHint != "" {
		if d.PSKFile == "" {
			return nil, fmt.Errorf("identity_hint: needs psk_file")
		}
		opts = append(opts, dtlsx.WithPSKHint([]byte(d.IdentityHint)))
	}
	if (d.CertFile == "") != (d.KeyFile == "") {
		return nil, fmt.Errorf("cert_file and key_file go together")
	}
	if d.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cert_file/key_file: %w", err)
		}
		opts = append(opts, dtlsx.WithCertificate(cert))
	}
	if d.ClientCAFile != "" {
		if d.CertFile == "" {
			return nil, fmt.Errorf("client_ca_file: needs cert_file and key_file")
		}
		pem, err := os.ReadFile(d.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca_file: %s has no PEM certificate", d.ClientCAFile)
		}
		opts = append(opts, dtlsx.WithClientCAs(pool))
	}
	for _, id := range slices.Sorted(maps.Keys(d.Identities)) {
		o := WithIdentityDevices(id, d.Identities[id]...)
		if err := o(&settings{}); err != nil {
			return nil, fmt.Errorf("identities: %v", err)
		}
		copts = append(copts, o)
	}
	if d.Anonymous {
		copts = append(copts, WithAnonymousDTLS(true))
	}
	if (d.SessionStore == "") != (d.SessionKeys == "") {
		return nil, fmt.Errorf("session_store and session_keys go together")
	}
	if d.SessionTTL < 0 {
		return nil, fmt.Errorf("session_ttl: must be positive")
	}
	if d.SessionTTL > 0 {
		if d.SessionStore == "" {
			return nil, fmt.Errorf("session_ttl: needs session_store")
		}
		cacheOpts = append(cacheOpts, dtlsx.WithTTL(d.SessionTTL))
	}
	if d.SessionStore != "" {
		if fi, err := os.Stat(filepath.Dir(d.SessionStore)); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("session_store: directory of %s does not exist", d.SessionStore)
		}
		ring, err := dtlsx.LoadKeyRingFile(d.SessionKeys)
		if err != nil {
			return nil, fmt.Errorf("session_keys: %w", err)
		}
		copts = append(copts, WithDTLSSessionStore(d.SessionStore, ring, cacheOpts...))
	}
	if d.HandshakeTimeout < 0 {
		return nil, fmt.Errorf("handshake_timeout: must be positive")
	}
	if d.HandshakeTimeout > 0 {
		opts = append(opts, dtlsx.WithHandshakeTimeout(d.HandshakeTimeout))
	}
	if d.FastResumption != nil {
		opts = append(opts, dtlsx.WithFastResumption(*d.FastResumption))
	}
	if d.OwnRecords != nil {
		opts = append(opts, dtlsx.WithOwnRecords(*d.OwnRecords))
	}
	for _, n := range []struct {
		field string
		v     int
		opt   func(int) dtlsx.Option
	}{{"max_full_handshakes", d.MaxFullHandshakes, dtlsx.WithMaxFullHandshakes}, {"handshake_workers", d.HandshakeWorkers, dtlsx.WithHandshakeWorkers}} {
		if n.v < 0 {
			return nil, fmt.Errorf("%s: must be positive", n.field)
		}
		if n.v > 0 {
			opts = append(opts, n.opt(n.v))
		}
	}
	return append(copts, WithDTLS(opts...)), nil
}

// ObserveConfig is one entry of observe:.
type ObserveConfig struct {
	Device  string        `yaml:"device"`
	Address string        `yaml:"address"`
	Path    string        `yaml:"path"`
	Topic   string        `yaml:"topic"`
	Refresh time.Duration `yaml:"refresh"`
}

// Register adds the "coap" connector kind to reg.
func Register(reg *gateway.Registry) error {
	return reg.AddConnector("coap", func(_ string, spec gateway.Section) (gateway.DeviceConnector, error) {
		var cfg Config
		if err := spec.Decode(&cfg); err != nil {
			return nil, err
		}
		opts := []Option{WithLogger(spec.Logger())}
		add := func(field string, o Option) error {
			s := defaultSettings()
			if err := o(&s); err != nil {
				return spec.Errorf(field, "%v", err)
			}
			opts = append(opts, o)
			return nil
		}
		var errs []error
		if cfg.Address != nil {
			errs = append(errs, add("address", WithAddress(*cfg.Address)))
		}
		if cfg.PathPrefix != nil {
			errs = append(errs, add("path_prefix", WithPathPrefix(*cfg.PathPrefix)))
		}
		if cfg.MaxBody != 0 {
			errs = append(errs, add("max_body", WithMaxBody(cfg.MaxBody)))
		}
		if cfg.DeliverTimeout != 0 {
			errs = append(errs, add("deliver_timeout", WithTimeouts(cfg.DeliverTimeout, 10*time.Second, 30*time.Second)))
		}
		if cfg.InflightWindow != 0 {
			errs = append(errs, add("inflight_window", WithInflightWindow(cfg.InflightWindow)))
		}
		if cfg.KeepAlive != 0 {
			errs = append(errs, add("keepalive", WithKeepAlive(cfg.KeepAlive)))
		}
		switch cfg.DownlinkMethod {
		case "", "post":
		case "put":
			opts = append(opts, WithDownlinkMethod(true))
		default:
			errs = append(errs, spec.Errorf("downlink_method", "want post or put, got %q", cfg.DownlinkMethod))
		}
		for dev, a := range cfg.Devices {
			errs = append(errs, add("devices", WithDeviceAddress(dev, a)))
		}
		for i, o := range cfg.Observe {
			if err := add("observe", WithObserve(Observe(o))); err != nil {
				errs = append(errs, spec.Errorf("observe", "observe[%d]: %v", i, err))
			}
		}
		if cfg.FastPath != nil {
			opts = append(opts, WithFastPath(*cfg.FastPath))
		}
		if cfg.UDPBatch != 0 {
			errs = append(errs, add("udp_batch", WithUDPBatch(cfg.UDPBatch)))
		}
		if cfg.DuplicateCache != 0 {
			errs = append(errs, add("duplicate_cache", WithDuplicateCache(cfg.DuplicateCache)))
		}
		if cfg.DTLS != nil {
			dopts, err := cfg.DTLS.options()
			if err != nil {
				errs = append(errs, spec.Errorf("dtls", "%v", err))
			} else {
				opts = append(opts, WithDTLS(dtlsx.WithLogger(spec.Logger())))
				opts = append(opts, dopts...)
			}
		}
		for _, err := range errs {
			if err != nil {
				return nil, err
			}
		}
		return New(opts...)
	})
}
