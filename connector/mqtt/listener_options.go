package mqtt

import (
	"github.com/iotgw/gateway"

	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// ListenerOption configures a Listener.
type ListenerOption func(*listenerSettings) error

type listenerSettings struct {
	addr           string
	listener       net.Listener
	tls            *tls.Config
	users          map[string]DeviceAuth
	anonymous      bool
	publish        []string
	subscribe      []string
	maxSessions    int
	writesPending  int32
	sessionExpiry  time.Duration
	maxPacket      uint32
	readBuffer     int
	commandTopic   string
	commandQoS     byte
	deliverTimeout time.Duration
	window         int
	connectTimeout time.Duration
	logger         *slog.Logger
	logEvery       time.Duration
}

func defaultListenerSettings() listenerSettings {
	return listenerSettings{
		addr:           "127.0.0.1:1883",
		users:          map[string]DeviceAuth{},
		publish:        []string{DefaultPublishACL},
		subscribe:      []string{DefaultSubscribeACL},
		maxSessions:    10000,
		writesPending:  32,
		sessionExpiry:  time.Hour,
		maxPacket:      256 << 10,
		readBuffer:     256,
		commandTopic:   DefaultCommandTopic,
		commandQoS:     1,
		deliverTimeout: 5 * time.Second,
		window:         gateway.DefaultInflightWindow,
		connectTimeout: 10 * time.Second,
		logger:         slog.Default(),
		logEvery:       time.Minute,
	}
}

// WithListenAddress sets the TCP address devices connect to. Default
// "127.0.0.1:1883" (loopback only: widen it deliberately).
func WithListenAddress(addr string) ListenerOption {
	return func(s *listenerSettings) error {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return fmt.Errorf("address %q: %v", addr, err)
		}
		s.addr = addr
		return nil
	}
}

// WithNetListener serves devices on ln (for example a TLS or socket
// activation listener the host built) instead of listening itself. The
// connector closes it on Disconnect.
func WithNetListener(ln net.Listener) ListenerOption {
	return func(s *listenerSettings) error {
		s.listener = ln
		return nil
	}
}

// WithDeviceAuth lets a device connect with a username and password.
func WithDeviceAuth(a DeviceAuth) ListenerOption {
	return func(s *listenerSettings) error {
		if a.Username == "" || a.Password == "" {
			return fmt.Errorf("device auth: username and password are required")
		}
		if a.Device == "" {
			a.Device = a.Username
		}
		if err := validateFilters(a.Publish); err != nil {
			return fmt.Errorf("device %s: publish ACL: %w", a.Device, err)
		}
		if err := validateFilters(a.Subscribe); err != nil {
			return fmt.Errorf("device %s: subscribe ACL: %w", a.Device, err)
		}
		if _, dup := s.users[a.Username]; dup {
			return fmt.Errorf("device auth: username %q defined twice", a.Username)
		}
		s.users[a.Username] = a
		return nil
	}
}

// WithClientCerts serves TLS with cfg; a device presenting a verified
// client certificate is identified by its subject common name. Set
// cfg.ClientAuth to tls.RequireAndVerifyClientCert and cfg.ClientCAs to
// the device CA. Devices without a certificate may still log in with
// WithDeviceAuth when ClientAuth allows it.
func WithClientCerts(cfg *tls.Config) ListenerOption {
	return func(s *listenerSettings) error {
		if cfg == nil || len(cfg.Certificates) == 0 && cfg.GetCertificate == nil {
			return fmt.Errorf("client certs: tls config without a server certificate")
		}
		s.tls = cfg
		return nil
	}
}

// WithAnonymous accepts any client, identifying the device by its MQTT
// client id. Default off: suitable for closed test networks only.
func WithAnonymous(on bool) ListenerOption {
	return func(s *listenerSettings) error {
		s.anonymous = on
		return nil
	}
}

// WithACL sets the topic filters devices may publish and subscribe to;
// {device} stands for the device id. Default publish
// "devices/{device}/#", subscribe "devices/{device}/cmd/#". A denied
// PUBLISH is dropped (MQTT 5: PUBACK "not authorized"; MQTT 3 QoS 1:
// disconnect); a denied SUBSCRIBE gets the failure return code.
func WithACL(publish, subscribe []string) ListenerOption {
	return func(s *listenerSettings) error {
		if err := validateFilters(publish); err != nil {
			return fmt.Errorf("publish ACL: %w", err)
		}
		if err := validateFilters(subscribe); err != nil {
			return fmt.Errorf("subscribe ACL: %w", err)
		}
		s.publish, s.subscribe = publish, subscribe
		return nil
	}
}

// WithMaxSessions caps concurrent device sessions; more are refused with
// "server unavailable"/"server busy". Default 10000. Each session holds a
// file descriptor: on Linux, Connect raises the soft open file limit
// (RLIMIT_NOFILE) towards n plus 256 for the rest of the gateway, up to
// the hard limit, and logs a warning if that is still short.
func WithMaxSessions(n int) ListenerOption {
	return func(s *listenerSettings) error {
		if n < 1 {
			return fmt.Errorf("max sessions must be at least 1")
		}
		s.maxSessions = n
		return nil
	}
}

// WithSessionLimits tunes per-session memory: pending outbound packets
// (default 32), socket read/write buffer bytes (default 256, the minimum),
// maximum packet size (default 256 KiB) and how long a persistent session
// of a disconnected device is kept (default 1h). Each pending slot costs a
// pointer; read buffers are pooled and held only while a packet arrives
// (an idle session holds none), and the write buffer exists only while
// writes queue, so the defaults are small for gateways with tens of
// thousands of devices. A larger read buffer saves read calls for
// devices that send bursts of many small packets; packets longer than the
// buffer are read straight into the packet.
func WithSessionLimits(writesPending int, buffer int, maxPacket uint32, expiry time.Duration) ListenerOption {
	return func(s *listenerSettings) error {
		if writesPending < 1 || buffer < 256 || maxPacket < 64 || expiry < 0 {
			return fmt.Errorf("session limits: want writesPending >= 1, buffer >= 256, maxPacket >= 64, expiry >= 0")
		}
		s.writesPending, s.readBuffer, s.maxPacket, s.sessionExpiry = int32(writesPending), buffer, maxPacket, expiry
		return nil
	}
}

// WithCommandTopic sets where downlink writes are published: {device} is
// the frame's device and {topic} its topic. Default
// "devices/{device}/cmd/{topic}", QoS 1.
func WithCommandTopic(template string, qos byte) ListenerOption {
	return func(s *listenerSettings) error {
		if qos > 2 {
			return fmt.Errorf("command qos %d: want 0, 1 or 2", qos)
		}
		if !validPublishTopic(commandTopic(template, "d", "t")) {
			return fmt.Errorf("command topic %q: not a publishable topic", template)
		}
		s.commandTopic, s.commandQoS = template, qos
		return nil
	}
}

// WithDeliverTimeout bounds how long a PUBLISH waits for the gateway to
// accept its frame. Default 5s.
func WithDeliverTimeout(d time.Duration) ListenerOption {
	return func(s *listenerSettings) error {
		if d <= 0 {
			return fmt.Errorf("deliver timeout must be positive")
		}
		s.deliverTimeout = d
		return nil
	}
}

// WithInflightWindow bounds how many PUBLISHes of one session the
// listener hands to the gateway together: the QoS 0 and 1 PUBLISHes a
// read brought in, up to this many, are delivered as one batch
// (gateway.DeliverBatch; in edge mode one Store commit for them all), and
// their PUBACKs are written together once each is accepted, in order.
// Default 64 (gateway.DefaultInflightWindow); 1 delivers one PUBLISH at a
// time. A device's own in-flight limit (Receive Maximum, the client's
// max_inflight) caps the useful window.
func WithInflightWindow(n int) ListenerOption {
	return func(s *listenerSettings) error {
		if n <= 0 {
			return fmt.Errorf("in-flight window must be positive")
		}
		s.window = n
		return nil
	}
}

// WithConnectTimeout bounds the time from accepting a connection to a
// complete CONNECT packet, TLS handshake included. A connection that takes
// longer is closed. Default 10s.
func WithConnectTimeout(d time.Duration) ListenerOption {
	return func(s *listenerSettings) error {
		if d <= 0 {
			return fmt.Errorf("connect timeout must be positive")
		}
		s.connectTimeout = d
		return nil
	}
}

// WithListenerLogger sets the logger. Default slog.Default(); the embedded
// broker logs warnings and errors only.
func WithListenerLogger(l *slog.Logger) ListenerOption {
	return func(s *listenerSettings) error {
		if l == nil {
			return fmt.Errorf("nil logger")
		}
		s.logger = l
		return nil
	}
}

// WithLogInterval sets how often a repeated problem is logged: the first
// refused message, ACL denial, failed login or oversized packet of a cause
// (a device or username and the reason) is logged at once; repeats within
// d are only counted, and the next line of that cause after d carries
// suppressed=N. Default 1 minute. A shorter interval shows more detail and
// costs more log volume when a device misbehaves in a loop.
func WithLogInterval(d time.Duration) ListenerOption {
	return func(s *listenerSettings) error {
		if d <= 0 {
			return fmt.Errorf("log interval must be positive")
		}
		s.logEvery = d
		return nil
	}
}
