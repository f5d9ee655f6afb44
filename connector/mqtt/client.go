package mqtt

import (
	"context"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"log/slog"
	"net"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/backoff"
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
		err := c.session(ctx, up, lost, sessions > 0)
		if err == nil {
			sessions++
			bo.Up()
			select {
			case <-ctx.Done():
			case err = <-lost:
			}
			c.mu.Lock()
			cli := c.cli
			c.cli = nil
			c.mu.Unlock()
			cli.Disconnect(250)
		}
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
func (c *Client) session(ctx context.Context, up gateway.Uplink, lost chan error, again bool) error {
	handler := func(_ paho.Client, m paho.Message) { c.handle(ctx, up, m, lost) }
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
	c.cli = cli
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

func (c *Client) handle(ctx context.Context, up gateway.Uplink, m paho.Message, lost chan error) {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.handlers.Add(1)
	c.mu.Unlock()
	defer c.handlers.Done()
	topic := m.Topic()
	dev, devTopic := "", topic
	for _, p := range c.s.patterns {
		if d, ok := p.Device(topic); ok {
			dev, devTopic = d, p.FrameTopic(topic)
			break
		}
	}
	if dev == "" {
		c.stats.Total.Malformed()
		c.log().Warn("mqtt message on a topic without a device id", "topic", topic)
		m.Ack()
		return
	}
	ds := c.stats.Device(dev)
	f := gateway.AcquireFrame()
	f.Device, f.Topic = dev, devTopic
	f.Payload = append(f.Payload[:0], m.Payload()...)
	n := len(f.Payload)
	dctx, cancel := context.WithTimeout(ctx, c.s.deliverTimeout)
	start := time.Now()
	err := up.Deliver(dctx, f)
	cancel()
	if err != nil {
		ds.Error()
		c.stats.Total.Error()
		c.log().Warn("mqtt frame not accepted", "device", dev, "topic", topic, "err", err)
		if m.Qos() > 0 {
			select { // leave it unacknowledged; the broker redelivers
			case lost <- fmt.Errorf("frame from %s not accepted: %w", dev, err):
			default:
			}
			return
		}
		m.Ack()
		return
	}
	ds.Frame(n)
	ds.Latency(time.Since(start))
	c.stats.Total.Frame(n)
	m.Ack()
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
