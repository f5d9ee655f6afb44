package mqtt

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/iotgw/gateway"
)

// ClientOption configures a Client.
type ClientOption func(*clientSettings) error

type clientSettings struct {
	broker             string
	clientID           string
	username, password string
	tls                *tls.Config
	clean              bool
	patterns           []TopicPattern
	qos                byte
	commandTopic       string
	commandQoS         byte
	timeout            time.Duration
	deliverTimeout     time.Duration
	backoffMin         time.Duration
	backoffMax         time.Duration
	window             int
	logger             *slog.Logger
}

func defaultClientSettings() clientSettings {
	return clientSettings{
		clientID:       "iotgw-southbound",
		qos:            1,
		commandTopic:   DefaultCommandTopic,
		commandQoS:     1,
		timeout:        10 * time.Second,
		deliverTimeout: 5 * time.Second,
		backoffMin:     200 * time.Millisecond,
		backoffMax:     30 * time.Second,
		window:         gateway.DefaultInflightWindow,
		logger:         slog.Default(),
	}
}

// WithBroker sets the broker URL: tcp://host:1883 or ssl://host:8883.
// Required.
func WithBroker(u string) ClientOption {
	return func(s *clientSettings) error {
		p, err := url.Parse(u)
		if err != nil || p.Host == "" || (p.Scheme != "tcp" && p.Scheme != "ssl" && p.Scheme != "tls" && p.Scheme != "mqtt" && p.Scheme != "mqtts") {
			return fmt.Errorf("broker %q: want tcp://host:port or ssl://host:port", u)
		}
		s.broker = u
		return nil
	}
}

// WithSession sets the MQTT client id and whether the session is clean.
// Default "iotgw-southbound", clean false: the broker keeps
// subscriptions and unacknowledged messages across reconnects. Two
// gateways on one broker need different ids.
func WithSession(clientID string, clean bool) ClientOption {
	return func(s *clientSettings) error {
		if clientID == "" {
			return fmt.Errorf("empty client id")
		}
		s.clientID, s.clean = clientID, clean
		return nil
	}
}

// WithCredentials sets the username and password sent to the broker.
func WithCredentials(username, password string) ClientOption {
	return func(s *clientSettings) error {
		s.username, s.password = username, password
		return nil
	}
}

// WithClientTLS sets the TLS configuration for ssl:// brokers.
func WithClientTLS(cfg *tls.Config) ClientOption {
	return func(s *clientSettings) error {
		s.tls = cfg
		return nil
	}
}

// WithTopics adds topic patterns to subscribe to at qos; each has one
// whole level "{device}" that names the device, e.g. "sensors/{device}/#".
// Default QoS 1.
func WithTopics(qos byte, patterns ...string) ClientOption {
	return func(s *clientSettings) error {
		if qos > 2 {
			return fmt.Errorf("qos %d: want 0, 1 or 2", qos)
		}
		for _, p := range patterns {
			tp, err := ParseTopicPattern(p)
			if err != nil {
				return err
			}
			s.patterns = append(s.patterns, tp)
		}
		s.qos = qos
		return nil
	}
}

// WithClientCommandTopic sets where downlink writes are published
// ({device}, {topic} as for WithCommandTopic). Default
// "devices/{device}/cmd/{topic}", QoS 1.
func WithClientCommandTopic(template string, qos byte) ClientOption {
	return func(s *clientSettings) error {
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

// WithTimeouts sets the broker operation timeout (connect, subscribe,
// publish; default 10s) and how long a message waits for the gateway to
// accept its frame (default 5s).
func WithTimeouts(op, deliver time.Duration) ClientOption {
	return func(s *clientSettings) error {
		if op <= 0 || deliver <= 0 {
			return fmt.Errorf("timeouts must be positive")
		}
		s.timeout, s.deliverTimeout = op, deliver
		return nil
	}
}

// WithClientInflightWindow bounds how many messages from the broker the
// client hands to the gateway before the first of them is accepted
// (gateway.Pipeline): they are delivered in batches, in edge mode one
// Store commit per batch, and each is acknowledged to the broker as soon
// as it is accepted, in the order received. A full window stops reading
// from the broker. Default 64 (gateway.DefaultInflightWindow); 1 delivers
// one message at a time, as before pipelining. The broker's own in-flight
// limit for the gateway's session (mosquitto's max_inflight_messages, 20
// by default) caps the useful window.
func WithClientInflightWindow(n int) ClientOption {
	return func(s *clientSettings) error {
		if n <= 0 {
			return fmt.Errorf("in-flight window must be positive")
		}
		s.window = n
		return nil
	}
}

// WithClientBackoff sets the reconnect delay range (exponential with full
// jitter; reset after 10s connected). Default 200ms..30s.
func WithClientBackoff(min, max time.Duration) ClientOption {
	return func(s *clientSettings) error {
		if min <= 0 || max < min {
			return fmt.Errorf("backoff: want 0 < min <= max")
		}
		s.backoffMin, s.backoffMax = min, max
		return nil
	}
}

// WithClientLogger sets the logger. Default slog.Default().
func WithClientLogger(l *slog.Logger) ClientOption {
	return func(s *clientSettings) error {
		if l == nil {
			return fmt.Errorf("nil logger")
		}
		s.logger = l
		return nil
	}
}
