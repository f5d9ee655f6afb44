package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/backoff"
	"github.com/iotgw/gateway/internal/bufconn"
	"github.com/iotgw/gateway/internal/connstats"
	"github.com/iotgw/gateway/internal/tcpkeepalive"
)

// ErrNotConnected is returned by Client.Write and Client.Check while the
// broker connection is down.
var ErrNotConnected = errors.New("mqtt client: not connected to the broker")

// Client is client mode: the gateway subscribes to an existing broker
// where devices publish. Topic patterns name the level that carries the
// device id ("sensors/{device}/#"). QoS 1/2 messages are acknowledged to
// the broker only after the gateway accepted the frame; a refused frame
// drops the connection so the broker redelivers it (this needs a
// persistent session: the default clean=false with a fixed client id).
type Client struct {
	s     clientSettings
	stats connstats.Table

	mu       sync.Mutex
	cli      paho.Client // nil while disconnected
	pipe     *gateway.Pipeline
	cancel   context.CancelFunc
	done     chan struct{}
	stopped  bool
	handlers sync.WaitGroup
}

var (
	_ gateway.DeviceConnector = (*Client)(nil)
	_ gateway.Downlinker      = (*Client)(nil)
	_ gateway.Checker         = (*Client)(nil)
)

// NewClient builds a client-mode connector. It connects on Connect.
func NewClient(opts ...ClientOption) (*Client, error) {
	s := defaultClientSettings()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&s); err != nil {
			return nil, fmt.Errorf("mqtt client: %w", err)
		}
	}
	if s.broker == "" {
		return nil, errors.New("mqtt client: no broker (WithBroker)")
	}
	if len(s.patterns) == 0 {
		return nil, errors.New("mqtt client: no topics (WithTopics)")
	}
	return &Client{s: s}, nil
}

// Stats returns the connector's and each device's counters. Reconnects
// counts broker sessions after the first; Malformed counts messages on
// topics without a device id.
func (c *Client) Stats() Stats { return c.stats.Stats() }

// StatsReport implements gateway.StatsReporter: the totals and at most
// maxDevices devices (see connstats.Report).
func (c *Client) StatsReport(maxDevices int) any { return c.stats.Report(maxDevices) }

// RegisterMetrics implements gateway.MetricsSource: the connector's totals
// (frames, bytes, problems by reason, sessions, mean latency).
func (c *Client) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	return c.stats.RegisterMetrics(m, label...)
}

var _ gateway.StatsReporter = (*Client)(nil)

// Check implements gateway.Checker: nil while connected to the broker.
func (c *Client) Check(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cli == nil {
		return ErrNotConnected
	}
	return nil
}

// Connect starts the session loop: it connects to the broker, subscribes,
// and reconnects with exponential backoff and full jitter when the
// connection drops. It returns at once; use Check for the state.
func (c *Client) Connect(_ context.Context, up gateway.Uplink) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		return errors.New("mqtt client: already connected")
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done, c.stopped = cancel, make(chan struct{}), false
	done := c.done
	go func() {
		defer close(done)
		c.run(ctx, up)
	}()
	return nil
}

// Disconnect closes the broker session and waits for message handlers.
func (c *Client) Disconnect(ctx context.Context) error {
	c.mu.Lock()
	cancel, done := c.cancel, c.done
	c.cancel = nil
	c.stopped = true
	c.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	wait := make(chan struct{})
	go func() { <-done; c.handlers.Wait(); close(wait) }()
	select {
	case <-wait:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt client: disconnect: %w", ctx.Err())
	}
}

func (c *Client) log() *slog.Logger { return c.s.logger }

func (c *Client) run(ctx context.Context, up gateway.Uplink) {
	bo := backoff.Backoff{Min: c.s.backoffMin, Max: c.s.backoffMax, Stable: 10 * time.Second}
	sessions := 0
	for ctx.Err() == nil {
		lost := make(chan error, 1)
		p := gateway.NewPipeline(up, c.s.window, c.s.deliverTimeout)
		err := c.session(ctx, p, lost, sessions > 0)
		if err == nil {
			sessions++
			bo.Up()
			select {
			case <-ctx.Done():
			case err = <-lost:
			}
			c.mu.Lock()
			cli := c.cli
			c.cli, c.pipe = nil, nil
			c.mu.Unlock()
			cli.Disconnect(250)
		}
		// The last completions find the session gone: their acks are
		// dropped and the broker redelivers those messages.
		p.Close()
		if ctx.Err() != nil {
			return
		}
		c.stats.Total.Error()
		wait := bo.Next()
		c.log().Warn("mqtt broker connection lost; reconnecting", "broker", c.s.broker, "err", err, "retry_in", wait.Round(time.Millisecond))
		if !backoff.Sleep(ctx, wait) {
			return
		}
	}
}

// session connects and subscribes once.
func (c *Client) session(ctx context.Context, p *gateway.Pipeline, lost chan error, again bool) error {
	ss := &clientSession{}
	handler := func(_ paho.Client, m paho.Message) { c.handle(ctx, p, ss, m, lost) }
	// The default handler also takes messages a persistent session
	// redelivers right after CONNACK, before SUBSCRIBE is answered.
	o := paho.NewClientOptions().AddBroker(c.s.broker).SetClientID(c.s.clientID).
		SetUsername(c.s.username).SetPassword(c.s.password).
		SetCleanSession(c.s.clean).SetAutoReconnect(false).SetConnectRetry(false).
		SetKeepAlive(30 * time.Second).SetPingTimeout(10 * time.Second).
		SetConnectTimeout(c.s.timeout).SetWriteTimeout(c.s.timeout).
		SetDialer(&net.Dialer{Timeout: c.s.timeout, KeepAliveConfig: tcpkeepalive.Config()}).
		SetAutoAckDisabled(true).SetOrderMatters(true).SetDefaultPublishHandler(handler).
		SetConnectionLostHandler(func(_ paho.Client, err error) {
			select {
			case lost <- err:
			default:
			}
		})
	if c.s.tls != nil {
		o.SetTLSConfig(c.s.tls)
	}
	if u, err := url.Parse(c.s.broker); err == nil && ownDial[u.Scheme] {
		o.SetCustomOpenConnectionFn(c.openConnection)
	}
	cli := paho.NewClient(o)
	if err := wait(ctx, cli.Connect(), c.s.timeout); err != nil {
		cli.Disconnect(0)
		return fmt.Errorf("connect %s: %w", c.s.broker, err)
	}
	filters := map[string]byte{}
	for _, p := range c.s.patterns {
		filters[p.Filter] = c.s.qos
	}
	if err := wait(ctx, cli.SubscribeMultiple(filters, handler), c.s.timeout); err != nil {
		cli.Disconnect(0)
		return fmt.Errorf("subscribe: %w", err)
	}
	if again {
		c.stats.Total.Reconnect()
	}
	c.mu.Lock()
	c.cli, c.pipe = cli, p
	c.mu.Unlock()
	c.log().Info("mqtt client subscribed", "broker", c.s.broker, "topics", len(filters))
	return nil
}

// wait waits for a paho token under ctx and a timeout.
func wait(ctx context.Context, tok paho.Token, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errors.New("timed out")
	}
}

// clientSession is the state of one broker session that its message
// completions share.
type clientSession struct {
	// refused is set once a QoS 1/2 frame was not accepted: the session is
	// being dropped, and no later message is acknowledged either, so the
	// broker redelivers from the refused one on, in order.
	refused atomic.Bool
}

// handle turns a message into a frame and submits it to the session's
// pipeline; the completion acknowledges it once accepted. handle returns
// without waiting, so paho reads the next message meanwhile, until the
// pipeline's window is full.
func (c *Client) handle(ctx context.Context, p *gateway.Pipeline, ss *clientSession, m paho.Message, lost chan error) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.handlers.Add(1)
	c.mu.Unlock()
	topic := m.Topic()
	dev, devTopic := "", topic
	for _, p := range c.s.patterns {
		if d, ok := p.Device(topic); ok {
			dev, devTopic = d, p.FrameTopic(topic)
			break
		}
	}
	if dev == "" {
		defer c.handlers.Done()
		c.stats.Total.Malformed()
		c.log().Warn("mqtt message on a topic without a device id", "topic", topic)
		if !ss.refused.Load() {
			m.Ack()
		}
		return
	}
	ds := c.stats.Device(dev)
	f := gateway.AcquireFrame()
	f.Device, f.Topic = dev, devTopic
	f.Payload = append(f.Payload[:0], m.Payload()...)
	n := len(f.Payload)
	start := time.Now()
	done := func(err error) {
		defer c.handlers.Done()
		if err != nil {
			ds.Error()
			c.stats.Total.Error()
			c.log().Warn("mqtt frame not accepted", "device", dev, "topic", topic, "err", err)
			if m.Qos() > 0 {
				ss.refused.Store(true)
				select { // leave it unacknowledged; the broker redelivers
				case lost <- fmt.Errorf("frame from %s not accepted: %w", dev, err):
				default:
				}
				return
			}
		}
		if !ss.refused.Load() {
			m.Ack()
		}
		if err == nil {
			ds.Frame(n)
			ds.Latency(time.Since(start))
			c.stats.Total.Frame(n)
		}
	}
	if err := p.Submit(ctx, f, false, done); err != nil {
		done(err)
	}
}

// Write implements gateway.Downlinker: it publishes the payload to the
// command topic of f.Device (WithClientCommandTopic) and waits for the
// broker's acknowledgement at QoS 1/2.
func (c *Client) Write(ctx context.Context, f *gateway.Frame) error {
	c.mu.Lock()
	cli := c.cli
	c.mu.Unlock()
	if cli == nil {
		return fmt.Errorf("mqtt client: write %s: %w", f.Device, ErrNotConnected)
	}
	topic := commandTopic(c.s.commandTopic, f.Device, f.Topic)
	if f.Device == "" || !validPublishTopic(topic) {
		return fmt.Errorf("mqtt client: write %s: invalid command topic %q", f.Device, topic)
	}
	payload := append([]byte(nil), f.Payload...)
	if err := wait(ctx, cli.Publish(topic, c.s.commandQoS, false, payload), c.s.timeout); err != nil {
		return fmt.Errorf("mqtt client: write %s to %s: %w", f.Device, topic, err)
	}
	return nil
}

// ownDial lists the broker URL schemes the client dials itself (see
// openConnection); paho dials the others (websockets).
var ownDial = map[string]bool{"tcp": true, "mqtt": true, "ssl": true, "tls": true, "mqtts": true, "tcps": true}

// clientReadBuffer holds a few hundred small PUBLISHes.
const clientReadBuffer = 64 << 10

// openConnection dials the broker for paho, through a bufconn.Coalesced
// below TLS: paho reads each packet header a byte at a time and writes
// every PUBACK on its own, each a system call on the bare connection.
func (c *Client) openConnection(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
	secure := uri.Scheme != "tcp" && uri.Scheme != "mqtt"
	host := uri.Host
	if uri.Port() == "" {
		port := "1883"
		if secure {
			port = "8883"
		}
		host = net.JoinHostPort(uri.Hostname(), port)
	}
	d := net.Dialer{Timeout: c.s.timeout, KeepAliveConfig: tcpkeepalive.Config()}
	raw, err := d.Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	conn := net.Conn(bufconn.NewCoalesced(raw, clientReadBuffer))
	if !secure {
		return conn, nil
	}
	cfg := &tls.Config{}
	if c.s.tls != nil {
		cfg = c.s.tls.Clone()
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg.ServerName = uri.Hostname()
	}
	tc := tls.Client(conn, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), c.s.timeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", host, err)
	}
	return tc, nil
}
