package httpc

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/iotgw/gateway"
)

// Option configures a Connector.
type Option func(*settings) error

// Poll is a device HTTP endpoint the connector fetches periodically.
type Poll struct {
	// Device names the device on frames. Required.
	Device string
	// URL is fetched with GET; a 200 body becomes one frame. Required.
	URL string
	// Topic is the frame topic. Default "poll".
	Topic string
	// Interval between polls. Default 10s.
	Interval time.Duration
	// Timeout of one request. Default 5s.
	Timeout time.Duration
}

type settings struct {
	addr           string
	listener       net.Listener
	maxBody        int64
	rate           float64
	burst          int
	tokens         map[string]string
	deliverTimeout time.Duration
	window         int
	polls          []Poll
	endpoints      map[string]string
	logger         *slog.Logger
}

func defaultSettings() settings {
	return settings{
		addr:           "127.0.0.1:8081",
		maxBody:        64 << 10,
		rate:           50,
		burst:          100,
		deliverTimeout: 5 * time.Second,
		window:         gateway.DefaultInflightWindow,
		endpoints:      map[string]string{},
		logger:         slog.Default(),
	}
}

// WithAddress sets the listen address of the ingest endpoint. Default
// "127.0.0.1:8081" (loopback only: widen it deliberately). "" turns the
// endpoint off, leaving only pollers.
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

// WithListener serves on ln instead of listening on the address, for
// TLS or other transports the host sets up. The connector closes it on
// Disconnect.
func WithListener(ln net.Listener) Option {
	return func(s *settings) error {
		s.listener = ln
		return nil
	}
}

// WithMaxBody sets the largest accepted body; bigger ones get 413.
// Default 64 KiB.
func WithMaxBody(n int64) Option {
	return func(s *settings) error {
		if n <= 0 {
			return fmt.Errorf("max body must be positive")
		}
		s.maxBody = n
		return nil
	}
}

// WithRateLimit sets the per-device token bucket: perSecond frames on
// average, bursts up to burst. Requests over it get 429 with Retry-After.
// Default 50/s, burst 100. perSecond 0 turns limiting off.
func WithRateLimit(perSecond float64, burst int) Option {
	return func(s *settings) error {
		if perSecond < 0 || perSecond > 0 && burst < 1 {
			return fmt.Errorf("rate limit: want perSecond >= 0 and burst >= 1")
		}
		s.rate, s.burst = perSecond, burst
		return nil
	}
}

// WithDeviceToken requires device to send "Authorization: Bearer token".
// Once any token is set, devices without one are refused (401). Default:
// no tokens, every device id is accepted, which suits a trusted network
// only.
func WithDeviceToken(device, token string) Option {
	return func(s *settings) error {
		if err := ValidateDeviceID(device); err != nil {
			return err
		}
		if token == "" {
			return fmt.Errorf("device %s: empty token", device)
		}
		if s.tokens == nil {
			s.tokens = map[string]string{}
		}
		s.tokens[device] = token
		return nil
	}
}

// WithDeliverTimeout bounds how long a request waits for the gateway to
// accept its frame (under the Block overflow policy) before answering
// 503. It also bounds downlink requests. Default 5s.
func WithDeliverTimeout(d time.Duration) Option {
	return func(s *settings) error {
		if d <= 0 {
			return fmt.Errorf("deliver timeout must be positive")
		}
		s.deliverTimeout = d
		return nil
	}
}

// WithInflightWindow bounds how many ingest requests' frames the
// connector hands to the gateway together (a gateway.Pipeline shared by
// the requests of the server Connect starts): concurrent requests are
// delivered in batches, in edge mode one Store commit per batch, and each
// is answered 202 once its own frame is accepted. Requests beyond the
// window wait for room (bounded by the deliver timeout). Default 64
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

// WithPoll adds a device endpoint to poll.
func WithPoll(p Poll) Option {
	return func(s *settings) error {
		if err := ValidateDeviceID(p.Device); err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		u, err := url.Parse(p.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("poll %s: url %q: want http(s)://host/path", p.Device, p.URL)
		}
		if p.Topic == "" {
			p.Topic = "poll"
		}
		if err := ValidateTopic(p.Topic); err != nil {
			return fmt.Errorf("poll %s: %w", p.Device, err)
		}
		if p.Interval <= 0 {
			p.Interval = 10 * time.Second
		}
		if p.Timeout <= 0 {
			p.Timeout = 5 * time.Second
		}
		s.polls = append(s.polls, p)
		return nil
	}
}

// WithDeviceEndpoint sets the base URL downlink writes to device go to.
func WithDeviceEndpoint(device, baseURL string) Option {
	return func(s *settings) error {
		u, err := url.Parse(baseURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("endpoint %s: url %q: want http(s)://host/path", device, baseURL)
		}
		s.endpoints[device] = baseURL
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

// Config is the YAML block of the "http" connector kind:
//
//	http:
//	  address: 0.0.0.0:8081
//	  max_body: 65536
//	  rate: 50            # frames/s per device; 0 = unlimited
//	  burst: 100
//	  deliver_timeout: 5s
//	  inflight_window: 64  # requests' frames delivered together
//	  tokens: {sensor-1: s3cret}
//	  endpoints: {valve-1: "http://10.0.0.9/cmd"}
//	  polls:
//	    - {device: meter-1, url: "http://10.0.0.8/state", topic: state, interval: 10s, timeout: 5s}
type Config struct {
	Address        *string           `yaml:"address"`
	MaxBody        int64             `yaml:"max_body"`
	Rate           *float64          `yaml:"rate"`
	Burst          int               `yaml:"burst"`
	DeliverTimeout time.Duration     `yaml:"deliver_timeout"`
	InflightWindow int               `yaml:"inflight_window"`
	Tokens         map[string]string `yaml:"tokens"`
	Endpoints      map[string]string `yaml:"endpoints"`
	Polls          []PollConfig      `yaml:"polls"`
}

// PollConfig is one entry of polls:.
type PollConfig struct {
	Device   string        `yaml:"device"`
	URL      string        `yaml:"url"`
	Topic    string        `yaml:"topic"`
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
}

// Register adds the "http" connector kind to reg.
func Register(reg *gateway.Registry) error {
	return reg.AddConnector("http", func(_ string, spec gateway.Section) (gateway.DeviceConnector, error) {
		var cfg Config
		if err := spec.Decode(&cfg); err != nil {
			return nil, err
		}
		opts := []Option{WithLogger(spec.Logger())}
		check := func(field string, o Option) error {
			var s settings = defaultSettings()
			if err := o(&s); err != nil {
				return spec.Errorf(field, "%v", err)
			}
			opts = append(opts, o)
			return nil
		}
		if cfg.Address != nil {
			if err := check("address", WithAddress(*cfg.Address)); err != nil {
				return nil, err
			}
		}
		if cfg.MaxBody != 0 {
			if err := check("max_body", WithMaxBody(cfg.MaxBody)); err != nil {
				return nil, err
			}
		}
		if cfg.Rate != nil || cfg.Burst != 0 {
			rate, burst := 50.0, cfg.Burst
			if cfg.Rate != nil {
				rate = *cfg.Rate
			}
			if burst == 0 {
				burst = max(1, int(2*rate))
			}
			if err := check("rate", WithRateLimit(rate, burst)); err != nil {
				return nil, err
			}
		}
		if cfg.DeliverTimeout != 0 {
			if err := check("deliver_timeout", WithDeliverTimeout(cfg.DeliverTimeout)); err != nil {
				return nil, err
			}
		}
		if cfg.InflightWindow != 0 {
			if err := check("inflight_window", WithInflightWindow(cfg.InflightWindow)); err != nil {
				return nil, err
			}
		}
		for dev, tok := range cfg.Tokens {
			if err := check("tokens", WithDeviceToken(dev, tok)); err != nil {
				return nil, err
			}
		}
		for dev, u := range cfg.Endpoints {
			if err := check("endpoints", WithDeviceEndpoint(dev, u)); err != nil {
				return nil, err
			}
		}
		for i, p := range cfg.Polls {
			if err := check("polls", WithPoll(Poll(p))); err != nil {
				return nil, spec.Errorf("polls", "polls[%d]: %v", i, err)
			}
		}
		return New(opts...)
	})
}
