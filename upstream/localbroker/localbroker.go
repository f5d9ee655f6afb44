// Package localbroker is an upstream that needs nothing installed: an MQTT
// broker embedded in the gateway process (mochi-mqtt). Messages are
// published to it as JSON envelopes, and any MQTT client, such as
// mosquitto_sub, can subscribe to them. It is the upstream of the reference
// daemon's embedded defaults and a convenient sink for tests and demos.
//
//	b := localbroker.New(localbroker.Config{Address: "127.0.0.1:1883"})
//	g, _ := gateway.New(gateway.WithSink("local", b), ...)
//	// mosquitto_sub -h 127.0.0.1 -p 1883 -t 'gw/#' -v
//
// Topics are "<prefix>/<device>/<message topic>"; the payload is
// gateway.Message.AppendJSON.
package localbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/mqttwire"
	"github.com/iotgw/gateway/internal/tcpkeepalive"
)

// Config configures the embedded broker.
type Config struct {
	// Address is the TCP address MQTT clients connect to. Default
	// "127.0.0.1:1883"; use "127.0.0.1:0" for a free port.
	Address string `yaml:"address"`
	// TopicPrefix starts every published topic. Default "gw".
	TopicPrefix string `yaml:"topic_prefix"`
}

// maxPacket bounds a client's packet (1 MiB): the local broker's clients
// subscribe and publish small messages.
const maxPacket = 1 << 20

// Broker is the embedded broker and a gateway.Sink publishing into it.
type Broker struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	srv    *mqtt.Server
	addr   string
	buf    []byte
	closed bool
}

var (
	_ gateway.Sink    = (*Broker)(nil)
	_ gateway.Starter = (*Broker)(nil)
	_ gateway.Checker = (*Broker)(nil)
)

// New returns a broker that starts listening on Start.
func New(cfg Config) *Broker {
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1:1883"
	}
	if cfg.TopicPrefix == "" {
		cfg.TopicPrefix = "gw"
	}
	return &Broker{cfg: cfg, log: slog.New(slog.DiscardHandler)}
}

// Register adds the "localbroker" sink kind to reg.
func Register(reg *gateway.Registry) error {
	return reg.AddSink("localbroker", func(name string, spec gateway.Section) (gateway.Sink, error) {
		var c Config
		if err := spec.Decode(&c); err != nil {
			return nil, err
		}
		if c.Address != "" {
			if _, port, err := net.SplitHostPort(c.Address); err != nil || port == "" {
				return nil, spec.Errorf("address", "want host:port, got %q", c.Address)
			}
		}
		if strings.ContainsAny(c.TopicPrefix, "+#") {
			return nil, spec.Errorf("topic_prefix", "must not contain MQTT wildcards")
		}
		return New(c), nil
	})
}

// Start listens on the configured address.
func (b *Broker) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		return nil
	}
	if b.closed {
		return errors.New("localbroker: closed")
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: b.log})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		return fmt.Errorf("localbroker: %w", err)
	}
	lc := net.ListenConfig{KeepAliveConfig: tcpkeepalive.Config()}
	ln, err := lc.Listen(ctx, "tcp", b.cfg.Address)
	if err != nil {
		return fmt.Errorf("localbroker: listen %s: %w", b.cfg.Address, err)
	}
	// The broker reads its clients' connections itself, and some malformed
	// packets crash its decoders (mochi-mqtt v2.7.9): the guard hands it
	// only packets that decode and closes a connection at the first that
	// does not.
	if err := srv.AddListener(listeners.NewNet("upstream", mqttwire.Guard(ln, maxPacket))); err != nil {
		_ = ln.Close()
		return fmt.Errorf("localbroker: listen %s: %w", b.cfg.Address, err)
	}
	if err := srv.Serve(); err != nil {
		_ = srv.Close()
		return fmt.Errorf("localbroker: serve: %w", err)
	}
	b.srv, b.addr = srv, ln.Addr().String()
	return nil
}

// Addr is the address the broker listens on, once started.
func (b *Broker) Addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.addr
}

// Publish implements gateway.Sink. Delivery to subscribers happens inside
// the broker before Publish returns.
func (b *Broker) Publish(ctx context.Context, msgs []*gateway.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return errors.New("localbroker: not started")
	}
	for _, m := range msgs {
		b.buf = m.AppendJSON(b.buf[:0])
		topic := b.cfg.TopicPrefix + "/" + m.Device
		if m.Topic != "" {
			topic += "/" + m.Topic
		}
		if err := b.srv.Publish(topic, b.buf, false, m.QoS); err != nil {
			return fmt.Errorf("localbroker: publish %s: %w", topic, err)
		}
	}
	return nil
}

// Subscribe delivers messages published to the broker that match filter to
// fn, from the broker's goroutines.
func (b *Broker) Subscribe(filter string, id int, fn func(topic string, payload []byte)) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return errors.New("localbroker: not started")
	}
	return b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		fn(pk.TopicName, pk.Payload)
	})
}

// Clients returns the number of connected MQTT clients.
func (b *Broker) Clients() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return 0
	}
	return b.srv.Clients.Len()
}

// Check implements gateway.Checker.
func (b *Broker) Check(context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return errors.New("localbroker: not started")
	}
	return nil
}

// Close stops the broker and disconnects its clients.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.srv == nil {
		return nil
	}
	err := b.srv.Close()
	b.srv = nil
	return err
}
