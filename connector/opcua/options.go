package opcua

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/confpath"
)

// Mode is how a server's nodes are read.
type Mode uint8

// The modes.
const (
	// Subscribe creates one subscription per server with a monitored item
	// per node: the server sends changes (the default).
	Subscribe Mode = iota
	// Poll reads every node each interval, in as few ReadRequests as the
	// server's MaxNodesPerRead allows.
	Poll
)

// The security policies this connector speaks.
const (
	PolicyNone           = "None"
	PolicyBasic256Sha256 = "Basic256Sha256"
)

// Node is one variable to read, by NodeId or by browse path.
type Node struct {
	// Name is the frame topic and point name. Default: the NodeId or the
	// browse path as written.
	Name string
	// ID is a NodeId, "ns=2;s=Demo.Temperature" or "i=2258". Exactly one
	// of ID and Path.
	ID string
	// Path is a browse path from the Objects folder, "2:Demo/2:Temperature"
	// (see ParseBrowsePath), resolved once per session.
	Path string
}

// Server is one OPC UA server (a device on frames).
type Server struct {
	// Name is the device id on frames. Required, unique.
	Name string
	// Endpoint is the discovery URL, "opc.tcp://host:4840[/path]".
	// Required. The connector asks it for its endpoints, picks the one
	// with the configured policy and mode, and connects to Endpoint (not
	// to the URL the server advertises, which often names a host the
	// gateway cannot resolve).
	Endpoint string
	// SecurityPolicy is PolicyNone (the default) or PolicyBasic256Sha256.
	SecurityPolicy string
	// SecurityMode is "None", "Sign" or "SignAndEncrypt". Default None
	// with PolicyNone and SignAndEncrypt otherwise.
	SecurityMode string
	// CertFile and KeyFile are the client certificate (DER or PEM) and
	// RSA key (PEM) for a secured policy. When both files are missing a
	// self-signed certificate (RSA 2048, 10 years, application URI
	// "urn:iotgw:gateway:<host name>") and its key are generated and
	// written there (the key mode 0600); the server must then trust it.
	// Default: client-cert.der and client-key.pem in the "iotgw/opcua"
	// folder of the user's configuration directory.
	CertFile, KeyFile string
	// TrustedCerts are server certificates (DER or PEM files, or folders
	// of them) the connector accepts on a secured policy; a server whose
	// certificate is not among them, nor signed by one of them, is
	// refused with ErrUntrustedServer. Required for a secured policy.
	TrustedCerts []string
	// Username and Password select user name authentication; without
	// Username the session is anonymous.
	Username, Password string
	// Mode is Subscribe (the default) or Poll.
	Mode Mode
	// Interval is the publishing interval (Subscribe) or the poll period
	// (Poll). Default 1s.
	Interval time.Duration
	// SamplingInterval is how often the server samples each monitored
	// item. Default: Interval. Faster sampling with a queue catches
	// changes between publishes at the cost of server load.
	SamplingInterval time.Duration
	// QueueSize is each monitored item's server-side queue. Default 10;
	// 1 keeps only the newest value between publishes.
	QueueSize uint32
	// Deadband is an absolute deadband for numeric items: a change
	// smaller than this is not reported. Default 0 (every change).
	Deadband float64
	// MaxNodesPerRead caps the nodes of one ReadRequest when polling.
	// Default 0: the server's OperationLimits/MaxNodesPerRead, or 1000
	// when the server reports no limit.
	MaxNodesPerRead int
	// Nodes are the variables to read. At least one.
	Nodes []Node
}

// Option configures a Connector.
type Option func(*settings) error

type settings struct {
	servers    []Server
	timeout    time.Duration
	keepAlive  time.Duration
	backoffMin time.Duration
	backoffMax time.Duration
	logger     *slog.Logger
}

func defaultSettings() settings {
	return settings{
		timeout:    5 * time.Second,
		keepAlive:  5 * time.Second,
		backoffMin: 200 * time.Millisecond,
		backoffMax: 30 * time.Second,
		logger:     slog.Default(),
	}
}

// DefaultCertDir is where generated client certificates go when a server
// names no CertFile/KeyFile: <user config dir>/iotgw/opcua.
func DefaultCertDir() string {
	d, err := os.UserConfigDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "iotgw", "opcua")
}

// WithServer adds a server. See Server for the defaults.
func WithServer(s Server) Option {
	return func(st *settings) error {
		if err := s.normalize(); err != nil {
			return err
		}
		for _, o := range st.servers {
			if o.Name == s.Name {
				return fmt.Errorf("server %s: defined twice", s.Name)
			}
		}
		s.Nodes = append([]Node(nil), s.Nodes...)
		st.servers = append(st.servers, s)
		return nil
	}
}

func (s *Server) normalize() error {
	switch {
	case s.Name == "":
		return fmt.Errorf("server: empty name")
	case !strings.HasPrefix(s.Endpoint, "opc.tcp://"):
		return fmt.Errorf("server %s: endpoint %q: want opc.tcp://host:port", s.Name, s.Endpoint)
	case len(s.Nodes) == 0:
		return fmt.Errorf("server %s: no nodes", s.Name)
	case s.Interval < 0 || s.SamplingInterval < 0 || s.Deadband < 0 || s.MaxNodesPerRead < 0:
		return fmt.Errorf("server %s: interval, sampling interval, deadband and max nodes per read must not be negative", s.Name)
	}
	switch strings.ToLower(s.SecurityPolicy) {
	case "", "none":
		s.SecurityPolicy = PolicyNone
	case "basic256sha256":
		s.SecurityPolicy = PolicyBasic256Sha256
	default:
		return fmt.Errorf("server %s: security policy %q: want None or Basic256Sha256", s.Name, s.SecurityPolicy)
	}
	switch strings.ToLower(s.SecurityMode) {
	case "":
		s.SecurityMode = "None"
		if s.SecurityPolicy != PolicyNone {
			s.SecurityMode = "SignAndEncrypt"
		}
	case "none":
		s.SecurityMode = "None"
	case "sign":
		s.SecurityMode = "Sign"
	case "signandencrypt", "sign_and_encrypt", "sign-and-encrypt":
		s.SecurityMode = "SignAndEncrypt"
	default:
		return fmt.Errorf("server %s: security mode %q: want None, Sign or SignAndEncrypt", s.Name, s.SecurityMode)
	}
	if (s.SecurityPolicy == PolicyNone) != (s.SecurityMode == "None") {
		return fmt.Errorf("server %s: security mode %s does not go with policy %s", s.Name, s.SecurityMode, s.SecurityPolicy)
	}
	if s.SecurityPolicy != PolicyNone {
		if len(s.TrustedCerts) == 0 {
			return fmt.Errorf("server %s: policy %s needs trusted server certificates", s.Name, s.SecurityPolicy)
		}
		if s.CertFile == "" {
			s.CertFile = filepath.Join(DefaultCertDir(), "client-cert.der")
		}
		if s.KeyFile == "" {
			s.KeyFile = filepath.Join(DefaultCertDir(), "client-key.pem")
		}
	}
	if s.Password != "" && s.Username == "" {
		return fmt.Errorf("server %s: password without username", s.Name)
	}
	if s.Interval == 0 {
		s.Interval = time.Second
	}
	if s.SamplingInterval == 0 {
		s.SamplingInterval = s.Interval
	}
	if s.QueueSize == 0 {
		s.QueueSize = 10
	}
	seen := map[string]bool{}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		switch {
		case (n.ID == "") == (n.Path == ""):
			return fmt.Errorf("server %s: node %d: want exactly one of id and path", s.Name, i)
		case n.ID != "":
			if _, err := ParseNodeID(n.ID); err != nil {
				return fmt.Errorf("server %s: node %d: %w", s.Name, i, err)
			}
		default:
			if _, err := ParseBrowsePath(n.Path); err != nil {
				return fmt.Errorf("server %s: node %d: %w", s.Name, i, err)
			}
		}
		if n.Name == "" {
			n.Name = n.ID + n.Path
		}
		if seen[n.Name] {
			return fmt.Errorf("server %s: node %d: name %q used twice", s.Name, i, n.Name)
		}
		seen[n.Name] = true
	}
	return nil
}

func (s *Server) mode() ua.MessageSecurityMode {
	switch s.SecurityMode {
	case "Sign":
		return ua.MessageSecurityModeSign
	case "SignAndEncrypt":
		return ua.MessageSecurityModeSignAndEncrypt
	}
	return ua.MessageSecurityModeNone
}

// WithTimeout sets the timeout of each request (connect, read, write,
// create subscription). Default 5s.
func WithTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("timeout must be positive")
		}
		s.timeout = d
		return nil
	}
}

// WithKeepAlive sets how often a session is checked when nothing else
// proves it alive: by reading the server's state (Poll) or by a
// ModifySubscription that keeps the subscription's parameters
// (Subscribe; it fails when the server dropped the subscription). A check that gets no
// answer within the same time ends the session, which is then re-created
// with its subscriptions: a network cut is noticed within twice this.
// Default 5s; shorter notices cuts sooner for one small read more per
// period.
func WithKeepAlive(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("keepalive must be positive")
		}
		s.keepAlive = d
		return nil
	}
}

// WithBackoff sets the reconnect delay range: exponential with full
// jitter from min to max. Defaults 200ms and 30s.
func WithBackoff(min, max time.Duration) Option {
	return func(s *settings) error {
		if min <= 0 || max < min {
			return fmt.Errorf("backoff: want 0 < min <= max")
		}
		s.backoffMin, s.backoffMax = min, max
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

// Config is the YAML block of the "opcua" connector kind:
//
//	opcua:
//	  timeout: 5s          # per request
//	  keepalive: 5s        # session check period
//	  backoff_min: 200ms
//	  backoff_max: 30s
//	  servers:
//	    - name: press1
//	      endpoint: opc.tcp://10.0.0.7:4840
//	      security_policy: Basic256Sha256   # None (default) | Basic256Sha256
//	      security_mode: SignAndEncrypt     # None | Sign | SignAndEncrypt
//	      cert_file: /etc/gw/opcua-cert.der # generated when missing
//	      key_file: /etc/gw/opcua-key.pem
//	      trusted_certs: [/etc/gw/opcua-trusted]
//	      username: gw
//	      password: secret
//	      mode: subscribe      # subscribe (default) | poll
//	      interval: 1s         # publishing or poll interval
//	      sampling_interval: 500ms
//	      queue_size: 10
//	      deadband: 0.5
//	      nodes:
//	        - {name: temperature, id: "ns=2;s=Demo.Temperature"}
//	        - {name: pressure, path: "2:Demo/2:Pressure"}
type Config struct {
	Timeout    time.Duration  `yaml:"timeout"`
	KeepAlive  time.Duration  `yaml:"keepalive"`
	BackoffMin time.Duration  `yaml:"backoff_min"`
	BackoffMax time.Duration  `yaml:"backoff_max"`
	Servers    []ServerConfig `yaml:"servers"`
}

// ServerConfig is one entry of servers:; see Server for each key.
type ServerConfig struct {
	Name             string        `yaml:"name"`
	Endpoint         string        `yaml:"endpoint"`
	SecurityPolicy   string        `yaml:"security_policy"`
	SecurityMode     string        `yaml:"security_mode"`
	CertFile         string        `yaml:"cert_file"`
	KeyFile          string        `yaml:"key_file"`
	TrustedCerts     []string      `yaml:"trusted_certs"`
	Username         string        `yaml:"username"`
	Password         string        `yaml:"password"`
	Mode             string        `yaml:"mode"`
	Interval         time.Duration `yaml:"interval"`
	SamplingInterval time.Duration `yaml:"sampling_interval"`
	QueueSize        uint32        `yaml:"queue_size"`
	Deadband         float64       `yaml:"deadband"`
	MaxNodesPerRead  int           `yaml:"max_nodes_per_read"`
	Nodes            []NodeConfig  `yaml:"nodes"`
}

// NodeConfig is one entry of nodes:.
type NodeConfig struct {
	Name string `yaml:"name"`
	ID   string `yaml:"id"`
	Path string `yaml:"path"`
}

// Register adds the "opcua" connector kind and the "opcua" codec kind
// (Codec) to reg.
func Register(reg *gateway.Registry) error {
	if err := reg.AddCodec("opcua", func(_ string, spec gateway.Section) (gateway.Codec, error) {
		var cfg struct{}
		if err := spec.Decode(&cfg); err != nil {
			return nil, err
		}
		return Codec{}, nil
	}); err != nil {
		return err
	}
	return reg.AddConnector("opcua", func(_ string, spec gateway.Section) (gateway.DeviceConnector, error) {
		var cfg Config
		if err := spec.Decode(&cfg); err != nil {
			return nil, err
		}
		opts, err := cfg.options(spec)
		if err != nil {
			return nil, err
		}
		return New(append([]Option{WithLogger(spec.Logger())}, opts...)...)
	})
}

func (cfg Config) options(spec gateway.Section) ([]Option, error) {
	var opts []Option
	switch {
	case cfg.Timeout < 0:
		return nil, spec.Errorf("timeout", "must be positive")
	case cfg.Timeout > 0:
		opts = append(opts, WithTimeout(cfg.Timeout))
	}
	switch {
	case cfg.KeepAlive < 0:
		return nil, spec.Errorf("keepalive", "must be positive")
	case cfg.KeepAlive > 0:
		opts = append(opts, WithKeepAlive(cfg.KeepAlive))
	}
	if cfg.BackoffMin != 0 || cfg.BackoffMax != 0 {
		lo, hi := cfg.BackoffMin, cfg.BackoffMax
		if lo == 0 {
			lo = 200 * time.Millisecond
		}
		if hi == 0 {
			hi = 30 * time.Second
		}
		if lo < 0 || hi < lo {
			return nil, spec.Errorf("backoff_min", "want 0 < backoff_min <= backoff_max")
		}
		opts = append(opts, WithBackoff(lo, hi))
	}
	if len(cfg.Servers) == 0 {
		return nil, spec.Errorf("servers", "at least one server is required")
	}
	seen := map[string]bool{}
	for i, sc := range cfg.Servers {
		at := func(key ...any) confpath.Path { return append(confpath.Path{"servers", i}, key...) }
		if sc.Name == "" {
			return nil, confpath.Errorf(spec, at("name"), "required")
		}
		if seen[sc.Name] {
			return nil, confpath.Errorf(spec, at("name"), "duplicate server %q", sc.Name)
		}
		seen[sc.Name] = true
		s := Server{Name: sc.Name, Endpoint: sc.Endpoint, SecurityPolicy: sc.SecurityPolicy, SecurityMode: sc.SecurityMode,
			CertFile: sc.CertFile, KeyFile: sc.KeyFile, TrustedCerts: sc.TrustedCerts, Username: sc.Username, Password: sc.Password,
			Interval: sc.Interval, SamplingInterval: sc.SamplingInterval, QueueSize: sc.QueueSize, Deadband: sc.Deadband,
			MaxNodesPerRead: sc.MaxNodesPerRead}
		switch strings.ToLower(sc.Mode) {
		case "", "subscribe", "subscription":
		case "poll", "polling":
			s.Mode = Poll
		default:
			return nil, confpath.Errorf(spec, at("mode"), "unknown mode %q (want subscribe or poll)", sc.Mode)
		}
		if len(sc.Nodes) == 0 {
			return nil, confpath.Errorf(spec, at("nodes"), "at least one node is required")
		}
		for j, n := range sc.Nodes {
			switch {
			case n.ID == "" && n.Path == "", n.ID != "" && n.Path != "":
				return nil, confpath.Errorf(spec, at("nodes", j), "want exactly one of id and path")
			case n.ID != "":
				if _, err := ParseNodeID(n.ID); err != nil {
					return nil, confpath.Errorf(spec, at("nodes", j, "id"), "%v", err)
				}
			default:
				if _, err := ParseBrowsePath(n.Path); err != nil {
					return nil, confpath.Errorf(spec, at("nodes", j, "path"), "%v", err)
				}
			}
			s.Nodes = append(s.Nodes, Node(n))
		}
		// The remaining checks name the server's block.
		if err := (&s).normalize(); err != nil {
			key := "endpoint"
			switch {
			case strings.Contains(err.Error(), "security policy"):
				key = "security_policy"
			case strings.Contains(err.Error(), "security mode"):
				key = "security_mode"
			case strings.Contains(err.Error(), "trusted"):
				key = "trusted_certs"
			case strings.Contains(err.Error(), "password"):
				key = "username"
			case strings.Contains(err.Error(), "used twice"):
				key = "nodes"
			case strings.Contains(err.Error(), "negative"):
				key = "interval"
			}
			return nil, confpath.Errorf(spec, at(key), "%v", err)
		}
		opts = append(opts, WithServer(s))
	}
	return opts, nil
}
