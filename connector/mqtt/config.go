package mqtt

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/iotgw/gateway"
)

// Config is the YAML block of the "mqtt" connector kind. mode picks
// listener (devices connect to the gateway) or client (the gateway
// subscribes to a broker); keys of the other mode are rejected.
//
//	mqtt:
//	  mode: listener
//	  address: 0.0.0.0:1883
//	  devices:
//	    - {username: sensor-1, password: s3cret}
//	  acl: {publish: ["devices/{device}/#"], subscribe: ["devices/{device}/cmd/#"]}
//	  max_sessions: 10000
//	  tls: {cert: /etc/gw/server.pem, key: /etc/gw/server.key, client_ca: /etc/gw/devices-ca.pem}
//	  command_topic: "devices/{device}/cmd/{topic}"
//	  log_interval: 1m    # repeated problems: one line per cause per interval
//	  inflight_window: 64 # PUBLISHes of a session delivered (and acknowledged) together
//
//	mqtt:
//	  mode: client
//	  broker: tcp://broker.local:1883
//	  client_id: gw-1-south
//	  topics: ["sensors/{device}/#"]
//	  qos: 1
//	  inflight_window: 64 # messages handed over before the first is accepted
type Config struct {
	Mode string `yaml:"mode"`

	// listener mode
	Address        string             `yaml:"address"`
	Anonymous      bool               `yaml:"anonymous"`
	Devices        []DeviceAuthConfig `yaml:"devices"`
	ACL            *ACLConfig         `yaml:"acl"`
	MaxSessions    int                `yaml:"max_sessions"`
	TLS            *TLSConfig         `yaml:"tls"`
	DeliverTimeout time.Duration      `yaml:"deliver_timeout"`
	ConnectTimeout time.Duration      `yaml:"connect_timeout"`
	LogInterval    time.Duration      `yaml:"log_interval"`

	// both modes
	CommandTopic string `yaml:"command_topic"`
	CommandQoS   *byte  `yaml:"command_qos"`
	// InflightWindow: WithInflightWindow (listener) or
	// WithClientInflightWindow (client); 64 when 0.
	InflightWindow int `yaml:"inflight_window"`

	// client mode
	Broker   string   `yaml:"broker"`
	ClientID string   `yaml:"client_id"`
	Clean    bool     `yaml:"clean"`
	Username string   `yaml:"username"`
	Password string   `yaml:"password"`
	Topics   []string `yaml:"topics"`
	QoS      *byte    `yaml:"qos"`
}

// DeviceAuthConfig is one entry of devices: (see DeviceAuth).
type DeviceAuthConfig struct {
	Username  string   `yaml:"username"`
	Password  string   `yaml:"password"`
	Device    string   `yaml:"device"`
	Publish   []string `yaml:"publish"`
	Subscribe []string `yaml:"subscribe"`
}

// ACLConfig is the acl: block.
type ACLConfig struct {
	Publish   []string `yaml:"publish"`
	Subscribe []string `yaml:"subscribe"`
}

// TLSConfig is the tls: block of listener mode: a server certificate and,
// for client-certificate auth, the CA that signs device certificates.
type TLSConfig struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// Register adds the "mqtt" connector kind to reg.
func Register(reg *gateway.Registry) error {
	return reg.AddConnector("mqtt", func(_ string, spec gateway.Section) (gateway.DeviceConnector, error) {
		var cfg Config
		if err := spec.Decode(&cfg); err != nil {
			return nil, err
		}
		switch cfg.Mode {
		case "listener", "":
			return cfg.listener(spec)
		case "client":
			return cfg.client(spec)
		}
		return nil, spec.Errorf("mode", "unknown mode %q (want listener or client)", cfg.Mode)
	})
}

func (cfg Config) listener(spec gateway.Section) (gateway.DeviceConnector, error) {
	for field, set := range map[string]bool{"broker": cfg.Broker != "", "client_id": cfg.ClientID != "", "clean": cfg.Clean,
		"username": cfg.Username != "", "password": cfg.Password != "", "topics": cfg.Topics != nil, "qos": cfg.QoS != nil} {
		if set {
			return nil, spec.Errorf(field, "only for mode: client")
		}
	}
	opts := []ListenerOption{WithListenerLogger(spec.Logger())}
	add := func(field string, o ListenerOption) error {
		s := defaultListenerSettings()
		if err := o(&s); err != nil {
			return spec.Errorf(field, "%v", err)
		}
		opts = append(opts, o)
		return nil
	}
	if cfg.Address != "" {
		if err := add("address", WithListenAddress(cfg.Address)); err != nil {
			return nil, err
		}
	}
	opts = append(opts, WithAnonymous(cfg.Anonymous))
	for i, d := range cfg.Devices {
		if err := add("devices", WithDeviceAuth(DeviceAuth(d))); err != nil {
			return nil, spec.Errorf("devices", "devices[%d]: %v", i, err)
		}
	}
	if cfg.ACL != nil {
		if err := add("acl", WithACL(cfg.ACL.Publish, cfg.ACL.Subscribe)); err != nil {
			return nil, err
		}
	}
	if cfg.MaxSessions != 0 {
		if err := add("max_sessions", WithMaxSessions(cfg.MaxSessions)); err != nil {
			return nil, err
		}
	}
	if cfg.TLS != nil {
		tc, err := cfg.TLS.build()
		if err != nil {
			return nil, spec.Errorf("tls", "%v", err)
		}
		opts = append(opts, WithClientCerts(tc))
	}
	if cfg.DeliverTimeout != 0 {
		if err := add("deliver_timeout", WithDeliverTimeout(cfg.DeliverTimeout)); err != nil {
			return nil, err
		}
	}
	if cfg.InflightWindow != 0 {
		if err := add("inflight_window", WithInflightWindow(cfg.InflightWindow)); err != nil {
			return nil, err
		}
	}
	if cfg.ConnectTimeout != 0 {
		if err := add("connect_timeout", WithConnectTimeout(cfg.ConnectTimeout)); err != nil {
			return nil, err
		}
	}
	if cfg.LogInterval != 0 {
		if err := add("log_interval", WithLogInterval(cfg.LogInterval)); err != nil {
			return nil, err
		}
	}
	if cfg.CommandTopic != "" || cfg.CommandQoS != nil {
		t, q := DefaultCommandTopic, byte(1)
		if cfg.CommandTopic != "" {
			t = cfg.CommandTopic
		}
		if cfg.CommandQoS != nil {
			q = *cfg.CommandQoS
		}
		if err := add("command_topic", WithCommandTopic(t, q)); err != nil {
			return nil, err
		}
	}
	l, err := NewListener(opts...)
	if err != nil {
		return nil, spec.Errorf("", "%v", err)
	}
	return l, nil
}

func (cfg Config) client(spec gateway.Section) (gateway.DeviceConnector, error) {
	for field, set := range map[string]bool{"address": cfg.Address != "", "anonymous": cfg.Anonymous, "devices": cfg.Devices != nil,
		"acl": cfg.ACL != nil, "max_sessions": cfg.MaxSessions != 0, "connect_timeout": cfg.ConnectTimeout != 0, "tls": cfg.TLS != nil,
		"log_interval": cfg.LogInterval != 0} {
		if set {
			return nil, spec.Errorf(field, "only for mode: listener")
		}
	}
	opts := []ClientOption{WithClientLogger(spec.Logger())}
	add := func(field string, o ClientOption) error {
		s := defaultClientSettings()
		if err := o(&s); err != nil {
			return spec.Errorf(field, "%v", err)
		}
		opts = append(opts, o)
		return nil
	}
	if cfg.Broker == "" {
		return nil, spec.Errorf("broker", "required in mode: client")
	}
	if err := add("broker", WithBroker(cfg.Broker)); err != nil {
		return nil, err
	}
	if cfg.ClientID != "" || cfg.Clean {
		id := cfg.ClientID
		if id == "" {
			id = defaultClientSettings().clientID
		}
		if err := add("client_id", WithSession(id, cfg.Clean)); err != nil {
			return nil, err
		}
	}
	if cfg.Username != "" || cfg.Password != "" {
		opts = append(opts, WithCredentials(cfg.Username, cfg.Password))
	}
	if len(cfg.Topics) == 0 {
		return nil, spec.Errorf("topics", "at least one pattern like \"sensors/{device}/#\" is required")
	}
	q := byte(1)
	if cfg.QoS != nil {
		q = *cfg.QoS
	}
	if err := add("topics", WithTopics(q, cfg.Topics...)); err != nil {
		return nil, err
	}
	if cfg.DeliverTimeout != 0 {
		if err := add("deliver_timeout", WithTimeouts(10*time.Second, cfg.DeliverTimeout)); err != nil {
			return nil, err
		}
	}
	if cfg.InflightWindow != 0 {
		if err := add("inflight_window", WithClientInflightWindow(cfg.InflightWindow)); err != nil {
			return nil, err
		}
	}
	if cfg.CommandTopic != "" || cfg.CommandQoS != nil {
		t, cq := DefaultCommandTopic, byte(1)
		if cfg.CommandTopic != "" {
			t = cfg.CommandTopic
		}
		if cfg.CommandQoS != nil {
			cq = *cfg.CommandQoS
		}
		if err := add("command_topic", WithClientCommandTopic(t, cq)); err != nil {
			return nil, err
		}
	}
	c, err := NewClient(opts...)
	if err != nil {
		return nil, spec.Errorf("", "%v", err)
	}
	return c, nil
}

// build loads the files. Reading files is not starting anything, so it is
// fine in a factory, and bad paths surface as configuration errors.
func (t TLSConfig) build() (*tls.Config, error) {
	if t.Cert == "" || t.Key == "" {
		return nil, fmt.Errorf("cert and key are required")
	}
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCA != "" {
		pem, err := os.ReadFile(t.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca %s: no PEM certificates", t.ClientCA)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}
