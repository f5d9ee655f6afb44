package dtlsx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/iotgw/gateway/internal/udpbatch"
	"github.com/pion/dtls/v3"
)

// Option configures Listen, NewListener, Dial and Client. Options that only
// make sense on one side say so and are ignored on the other.
type Option func(*settings) error

type settings struct {
	certs         []tls.Certificate
	rootCAs       *x509.CertPool
	clientCAs     *x509.CertPool
	serverName    string
	psk           PSKProvider
	pskHint       []byte
	clientPSKID   []byte
	clientPSK     func(hint []byte) ([]byte, error)
	suites        []dtls.CipherSuiteID
	cache         *SessionCache
	timeout       time.Duration
	maxFull       int
	workers       int
	noNetPass     bool // tests: tokens never wait for the network poller
	maxPending    int
	sourceRate    float64
	sourceBurst   int
	cidLen        int
	mtu           int
	flight        time.Duration
	backlog       int
	udpBatch      int
	log           *slog.Logger
	verifyConnect func(*dtls.State) error
	fastResume    bool
	ownRecords    bool
}

func defaultSettings() settings {
	return settings{
		timeout:     10 * time.Second,
		maxPending:  4096,
		sourceRate:  100,
		sourceBurst: 200,
		cidLen:      8,
		backlog:     256,
		udpBatch:    16,
		log:         slog.Default(),
		fastResume:  true,
		ownRecords:  true,
	}
}

func buildSettings(opts []Option) (settings, error) {
	s := defaultSettings()
	for _, o := range opts {
		if err := o(&s); err != nil {
			return s, err
		}
	}
	return s, nil
}

// WithCertificate sets the certificate chain this side presents: required
// on a server that offers certificate suites; on a client it is sent when
// the server asks (WithClientCAs).
func WithCertificate(certs ...tls.Certificate) Option {
	return func(s *settings) error {
		if len(certs) == 0 {
			return errors.New("dtlsx: WithCertificate needs a certificate")
		}
		s.certs = append(s.certs, certs...)
		return nil
	}
}

// WithRootCAs sets the CAs a client trusts for the server certificate
// (default: the host's roots).
func WithRootCAs(pool *x509.CertPool) Option {
	return func(s *settings) error { s.rootCAs = pool; return nil }
}

// WithServerName sets the name a client checks the server certificate
// against and sends as SNI (default: none, which fails verification of a
// certificate-authenticated server unless the certificate has the IP).
func WithServerName(name string) Option {
	return func(s *settings) error { s.serverName = name; return nil }
}

// WithClientCAs makes a server require and verify a client certificate
// chained to pool (default: no client certificates). Server only. Pion does
// not resume sessions of certificate-authenticated clients, so every
// handshake of such a device is a full one.
func WithClientCAs(pool *x509.CertPool) Option {
	return func(s *settings) error { s.clientCAs = pool; return nil }
}

// WithPSK makes a server accept PSK suites, resolving device identities
// through p. With certificates also set, both kinds are offered. Server only.
func WithPSK(p PSKProvider) Option {
	return func(s *settings) error {
		if p == nil {
			return errors.New("dtlsx: nil PSK provider")
		}
		s.psk = p
		return nil
	}
}

// WithPSKHint sets the psk_identity_hint a server sends in
// ServerKeyExchange (default: none). Server only.
func WithPSKHint(hint []byte) Option {
	return func(s *settings) error { s.pskHint = clone(hint); return nil }
}

// WithClientPSK makes a client authenticate with identity and key. Client only.
func WithClientPSK(identity, key []byte) Option {
	k := clone(key)
	return WithClientPSKFunc(identity, func([]byte) ([]byte, error) { return k, nil })
}

// WithClientPSKFunc makes a client authenticate with identity and the key
// keyFor returns for the server's hint (nil when the server sent none).
// Client only.
func WithClientPSKFunc(identity []byte, keyFor func(hint []byte) ([]byte, error)) Option {
	return func(s *settings) error {
		if len(identity) == 0 || keyFor == nil {
			return errors.New("dtlsx: client PSK needs an identity and a key")
		}
		s.clientPSKID, s.clientPSK = clone(identity), keyFor
		return nil
	}
}

// WithCipherSuites restricts the suites offered (default: pion's list for
// the configured credentials).
func WithCipherSuites(ids ...dtls.CipherSuiteID) Option {
	return func(s *settings) error { s.suites = append(s.suites, ids...); return nil }
}

// WithSessionCache resumes sessions through c. A listener without it keeps
// its own memory-only cache (10,000 sessions, 24h); a client without it
// never resumes.
func WithSessionCache(c *SessionCache) Option {
	return func(s *settings) error {
		if c == nil {
			return errors.New("dtlsx: nil session cache")
		}
		s.cache = c
		return nil
	}
}

// WithHandshakeTimeout bounds each server-side handshake (default 10s).
// Half-open associations hold memory until then. Clients use Dial's context.
func WithHandshakeTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("dtlsx: handshake timeout %v: must be positive", d)
		}
		s.timeout = d
		return nil
	}
}

// WithMaxFullHandshakes bounds concurrent full certificate handshakes past
// the cookie exchange. Further ones wait for a slot in arrival order;
// resumptions, PSK-only listeners and established traffic never wait.
//
// By default the bound follows the listener's established traffic. While
// sessions established for more than a second carry records (within the
// last second), it is 4 per handshake worker; otherwise it is 64. Each
// active handshake adds goroutines inside pion, which queue ahead of
// established records: in a storm of 5,000 full handshakes on one gateway
// core, 4 slots cut the p99 of established round trips about threefold
// against 64, in about the same time to all established (BENCHMARKS.md,
// "Reconnect storm"). With no established traffic to protect, the larger
// bound keeps full-handshake throughput at stock pion's.
//
// A slot is held for about one round trip to the device, so the
// full-handshake rate is at most n per round trip: set it for devices
// behind high-latency links (cellular, 6LoWPAN), where 4 slots and a
// 200 ms round trip allow 20 full handshakes/s. Server only.
func WithMaxFullHandshakes(n int) Option {
	return func(s *settings) error {
		if n <= 0 {
			return fmt.Errorf("dtlsx: max full handshakes %d: must be positive", n)
		}
		s.maxFull = n
		return nil
	}
}

// WithHandshakeWorkers bounds how many associations run a handshake step
// (parsing a flight and computing the answer: key exchange, signatures,
// key derivation) at once; the others wait in arrival order, steps of
// handshakes under way and resumptions before new full handshakes.
//
// By default the bound follows the listener's established traffic: one
// fewer than GOMAXPROCS (at least 1) while sessions established for more
// than a second carry records, keeping a core for them during a reconnect
// storm; GOMAXPROCS otherwise, so a gateway without established traffic
// (a cold start) handshakes at full speed. A fixed n applies always.
// Waiting for the peer never holds a worker. Server only.
//
// While established traffic runs and the tokens could hold every
// processor (GOMAXPROCS 1, or n >= GOMAXPROCS), a released token is handed
// on only after the Go scheduler has polled the network, so records
// waiting in the socket are routed between two handshake steps instead of
// after up to 10 ms.
//
// The listener runs GOMAXPROCS+3 (or n+3) worker goroutines: they look up
// each new association's session (the extra three overlap
// persistent-store reads) and run the listener's own abbreviated
// handshakes step by step, so a storm of resumptions queues inside the
// listener instead of as runnable goroutines ahead of established
// traffic. pion's full handshakes keep a goroutine of their own per
// association and take the same tokens.
func WithHandshakeWorkers(n int) Option {
	return func(s *settings) error {
		if n <= 0 {
			return fmt.Errorf("dtlsx: handshake workers %d: must be positive", n)
		}
		s.workers = n
		return nil
	}
}

// WithMaxPendingHandshakes bounds associations that have not finished their
// handshake (default 4096). ClientHellos beyond it are dropped and counted;
// the device retransmits. Server only.
func WithMaxPendingHandshakes(n int) Option {
	return func(s *settings) error {
		if n <= 0 {
			return fmt.Errorf("dtlsx: max pending handshakes %d: must be positive", n)
		}
		s.maxPending = n
		return nil
	}
}

// WithSourceRate limits new associations per source IP address to perSecond
// with bursts of burst (default 100/s, burst 200). Devices behind one NAT
// share a budget. perSecond 0 disables the limit. Server only.
func WithSourceRate(perSecond float64, burst int) Option {
	return func(s *settings) error {
		if perSecond < 0 || (perSecond > 0 && burst < 1) {
			return fmt.Errorf("dtlsx: source rate %v/s burst %d: invalid", perSecond, burst)
		}
		s.sourceRate, s.sourceBurst = perSecond, burst
		return nil
	}
}

// WithConnectionIDs sets the length of the RFC 9146 connection ids a server
// issues (default 8 bytes) so a device keeps its session across NAT
// rebinding; 0 turns them off. Clients always offer to send them.
func WithConnectionIDs(length int) Option {
	return func(s *settings) error {
		if length < 0 || length > 255 {
			return fmt.Errorf("dtlsx: connection id length %d: want 0..255", length)
		}
		s.cidLen = length
		return nil
	}
}

// WithMTU sets the size handshake messages are fragmented to (pion default 1200).
func WithMTU(n int) Option {
	return func(s *settings) error {
		if n < 256 || n > maxDatagram {
			return fmt.Errorf("dtlsx: mtu %d: want 256..%d", n, maxDatagram)
		}
		s.mtu = n
		return nil
	}
}

// WithFlightInterval sets the first handshake retransmission timeout
// (pion default 1s, doubling).
func WithFlightInterval(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("dtlsx: flight interval %v: must be positive", d)
		}
		s.flight = d
		return nil
	}
}

// WithAcceptBacklog bounds established connections waiting for Accept
// (default 256); their handshake goroutines wait meanwhile. Server only.
func WithAcceptBacklog(n int) Option {
	return func(s *settings) error {
		if n <= 0 {
			return fmt.Errorf("dtlsx: accept backlog %d: must be positive", n)
		}
		s.backlog = n
		return nil
	}
}

// WithUDPBatch sets how many datagrams the listener's reader takes from a
// *net.UDPConn per system call (recvmmsg on Linux, into buffers of the
// listener's datagram pool, so nothing is allocated per datagram). 1 reads
// one per call, as on platforms without recvmmsg and for other
// net.PacketConn types, where larger values fall back to it. Writes stay
// one datagram per call: they come from each association's goroutine.
// Default 16. Server only.
func WithUDPBatch(n int) Option {
	return func(s *settings) error {
		if n < 1 || n > udpbatch.MaxBatch {
			return fmt.Errorf("dtlsx: udp batch %d: must be 1..%d", n, udpbatch.MaxBatch)
		}
		s.udpBatch = n
		return nil
	}
}

// WithVerifyConnection runs fn after every handshake, resumed ones included;
// an error aborts the handshake.
func WithVerifyConnection(fn func(*dtls.State) error) Option {
	return func(s *settings) error { s.verifyConnect = fn; return nil }
}

// WithFastResumption chooses who runs resumed handshakes (default true:
// the listener). With it, a ClientHello that offers a session the cache
// resolves is answered by the listener's own abbreviated handshake
// (ServerHello, ChangeCipherSpec, Finished in one datagram; the client's
// Finished checked in constant time, a bad one refused at once with a
// fatal alert and counted in Stats.DecryptFailures), and pion receives
// the established state. Unlike pion's own resumption it negotiates RFC
// 9146 connection ids again, so a resumed device keeps its association
// across NAT rebinding. Trade-off: pion can only import a state through
// encoding/gob, which costs about as much CPU as the handshake work saved
// and ~9 KiB more garbage per resumption, so the server's CPU per
// resumption stays about the same. Hellos it does not handle (CBC
// suites, SRTP, fragmented or cookie-bearing hellos, an
// extended_master_secret offer that differs from the session's) go
// through pion's handshake as before. false sends every handshake through
// pion. Stats.ResumedFast counts the listener's resumptions. Server only.
func WithFastResumption(on bool) Option {
	return func(s *settings) error { s.fastResume = on; return nil }
}

// WithOwnRecords (default true) has a connection resumed by the
// listener's own handshake (WithFastResumption) keep its records in dtlsx
// too: Accept returns a *dtlsx.Conn instead of a *dtls.Conn, and no pion
// Conn is built, which is most of the server's cost of a resumption (the
// state import pion needs alone is ~25 µs and ~260 allocations). The
// Conn does AEAD record protection with a replay window, connection-id
// address updates and close_notify; it does not renegotiate, and its
// ConnectionState builds pion's State on demand. false hands resumed
// sessions to pion as before. Server only.
func WithOwnRecords(on bool) Option {
	return func(s *settings) error { s.ownRecords = on; return nil }
}

// WithLogger sets where the listener logs (default slog.Default()). pion's
// own lines for each association go there too, errors at Warn and the rest
// at Debug, instead of to pion's default logger (PION_LOG_* variables).
func WithLogger(l *slog.Logger) Option {
	return func(s *settings) error {
		if l == nil {
			return errors.New("dtlsx: nil logger")
		}
		s.log = l
		return nil
	}
}

// Default suites: the CoAP mandatory ones (RFC 7252 9.1.3) first, then
// the common AEAD suites.
var (
	certificateSuites = [...]dtls.CipherSuiteID{
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		dtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM,
		dtls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		dtls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	}
	pskSuites = [...]dtls.CipherSuiteID{
		dtls.TLS_PSK_WITH_AES_128_CCM_8,
		dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
		dtls.TLS_PSK_WITH_AES_128_CCM,
		dtls.TLS_PSK_WITH_CHACHA20_POLY1305_SHA256,
		dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
	}
)

// cipherSuites returns the configured suites or the defaults for the
// credentials this side has.
func (s *settings) cipherSuites() []dtls.CipherSuiteID {
	if len(s.suites) > 0 {
		return s.suites
	}
	var out []dtls.CipherSuiteID
	if len(s.certs) > 0 || (s.psk == nil && s.clientPSK == nil) {
		out = append(out, certificateSuites[:]...)
	}
	if s.psk != nil || s.clientPSK != nil {
		out = append(out, pskSuites[:]...)
	}
	return out
}

// shared translates what both sides use into pion options.
func (s *settings) shared() []dtls.Option {
	var o []dtls.Option
	if len(s.certs) > 0 {
		o = append(o, dtls.WithCertificates(s.certs...))
	}
	if suites := s.cipherSuites(); len(suites) > 0 {
		o = append(o, dtls.WithCipherSuites(suites...))
	}
	if s.rootCAs != nil {
		o = append(o, dtls.WithRootCAs(s.rootCAs))
	}
	if s.serverName != "" {
		o = append(o, dtls.WithServerName(s.serverName))
	}
	if s.mtu > 0 {
		o = append(o, dtls.WithMTU(s.mtu))
	}
	if s.flight > 0 {
		o = append(o, dtls.WithFlightInterval(s.flight))
	}
	if s.verifyConnect != nil {
		o = append(o, dtls.WithVerifyConnection(s.verifyConnect))
	}
	o = append(o, dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret))
	return o
}

func (s *settings) serverOptions() ([]dtls.ServerOption, error) {
	if len(s.certs) == 0 && s.psk == nil {
		return nil, errors.New("dtlsx: a listener needs WithCertificate or WithPSK")
	}
	var o []dtls.ServerOption
	for _, x := range s.shared() {
		o = append(o, x)
	}
	if s.psk != nil {
		o = append(o, dtls.WithPSK(s.psk.PSK))
		if s.pskHint != nil {
			o = append(o, dtls.WithPSKIdentityHint(s.pskHint))
		}
	}
	if s.clientCAs != nil {
		o = append(o, dtls.WithClientCAs(s.clientCAs), dtls.WithClientAuth(dtls.RequireAndVerifyClientCert))
	}
	return o, nil
}

// resumeOptions are the pion options of a Conn resumed from the state
// the listener's own abbreviated handshake negotiated.
func (s *settings) resumeOptions() []dtls.Option {
	o := s.shared()
	if s.psk != nil {
		o = append(o, dtls.WithPSK(s.psk.PSK))
	}
	return o
}

func (s *settings) clientOptions() ([]dtls.ClientOption, error) {
	var o []dtls.ClientOption
	for _, x := range s.shared() {
		o = append(o, x)
	}
	if s.clientPSK != nil {
		o = append(o, dtls.WithPSK(s.clientPSK), dtls.WithPSKIdentityHint(s.clientPSKID))
	}
	if s.cache != nil {
		o = append(o, dtls.WithSessionStore(s.cache))
	}
	o = append(o, dtls.WithConnectionIDGenerator(dtls.OnlySendCIDGenerator()))
	return o, nil
}
