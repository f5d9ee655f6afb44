// Package sim is a simulated field of devices: a DeviceConnector that
// produces environmental readings on a timer, and the Codec for its frames.
// It exists so a gateway can run end to end with nothing installed: demos,
// tests of sinks and routes, and load generation.
//
//	conn := sim.New(sim.Config{Devices: 10, Interval: time.Second})
//	g, _ := gateway.New(gateway.WithConnector("sim", conn), gateway.WithCodec("sim", sim.Codec{}), ...)
//
// Frame layout (12 bytes, big endian):
//
//	offset 0  float32  temperature, degrees Celsius
//	offset 4  float32  relative humidity, percent
//	offset 8  uint32   sequence number of the device
//
// Devices are named "dev-000", "dev-001", ...; every frame's topic is
// "env", the device-side topic after the device id, as for every
// connector (see the gateway package's Frame.Topic).
package sim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/waitctx"
)

// FrameSize is the length of a simulated frame.
const FrameSize = 12

// Config describes the simulated field. Zero values take the defaults.
type Config struct {
	// Devices is the number of simulated devices. Default 4.
	Devices int `yaml:"devices"`
	// Interval is how often each device reports. Default 1s.
	Interval time.Duration `yaml:"interval"`
}

// Connector is the simulated device field.
type Connector struct {
	cfg    Config
	mu     sync.Mutex
	cancel context.CancelFunc
	wg     sync.WaitGroup
	writes []string
}

var (
	_ gateway.DeviceConnector = (*Connector)(nil)
	_ gateway.Downlinker      = (*Connector)(nil)
)

// New returns a simulated field; nothing runs until Connect.
func New(cfg Config) *Connector {
	if cfg.Devices <= 0 {
		cfg.Devices = 4
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	return &Connector{cfg: cfg}
}

// Register adds the "sim" connector kind and the "sim" codec kind to reg.
func Register(reg *gateway.Registry) error {
	return errors.Join(
		reg.AddConnector("sim", func(name string, spec gateway.Section) (gateway.DeviceConnector, error) {
			var c Config
			if err := spec.Decode(&c); err != nil {
				return nil, err
			}
			if c.Devices < 0 || c.Devices > 100000 {
				return nil, spec.Errorf("devices", "must be between 0 and 100000, got %d", c.Devices)
			}
			if c.Interval < 0 {
				return nil, spec.Errorf("interval", "must not be negative")
			}
			return New(c), nil
		}),
		reg.AddCodec("sim", func(name string, spec gateway.Section) (gateway.Codec, error) {
			if !spec.IsZero() {
				if err := spec.Decode(&struct{}{}); err != nil {
					return nil, err
				}
			}
			return Codec{}, nil
		}),
	)
}

// Connect starts one goroutine per device.
func (c *Connector) Connect(ctx context.Context, up gateway.Uplink) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		return errors.New("sim: already connected")
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	for i := 0; i < c.cfg.Devices; i++ {
		c.wg.Add(1)
		go func(i int) {
			defer c.wg.Done()
			c.device(runCtx, up, i)
		}(i)
	}
	return nil
}

func (c *Connector) device(ctx context.Context, up gateway.Uplink, i int) {
	name := fmt.Sprintf("dev-%03d", i)
	const topic = "env" // the device-side topic: the part after the device id
	// Spread devices over the interval so the load is even.
	phase := c.cfg.Interval * time.Duration(i) / time.Duration(c.cfg.Devices)
	t := time.NewTimer(phase)
	defer t.Stop()
	var seq uint32
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(c.cfg.Interval)
		seq++
		f := gateway.AcquireFrame()
		f.Device, f.Topic = name, topic
		ph := float64(seq)/60 + float64(i)
		f.Payload = AppendFrame(f.Payload, float32(21+4*math.Sin(ph)), float32(45+10*math.Cos(ph)), seq)
		if err := up.Deliver(ctx, f); err != nil && ctx.Err() == nil && !errors.Is(err, gateway.ErrDropped) {
			return
		}
	}
}

// Disconnect stops every device and waits for them.
func (c *Connector) Disconnect(ctx context.Context) error {
	c.mu.Lock()
	cancel := c.cancel
	c.cancel = nil
	c.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	if err := waitctx.Wait(ctx, &c.wg); err != nil {
		return fmt.Errorf("sim: disconnect: %w", err)
	}
	return nil
}

// Write records a downlink command for a simulated device.
func (c *Connector) Write(ctx context.Context, f *gateway.Frame) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, f.Device+" "+f.Topic)
	return nil
}

// AppendFrame appends one simulated frame to dst.
func AppendFrame(dst []byte, temperature, humidity float32, seq uint32) []byte {
	dst = binary.BigEndian.AppendUint32(dst, math.Float32bits(temperature))
	dst = binary.BigEndian.AppendUint32(dst, math.Float32bits(humidity))
	return binary.BigEndian.AppendUint32(dst, seq)
}

// Codec decodes simulated frames into the points temperature (C),
// humidity (%) and seq, and encodes them back.
type Codec struct{}

var _ gateway.Codec = Codec{}

// Decode implements gateway.Codec without allocating.
func (Codec) Decode(f *gateway.Frame, dst *gateway.Message) error {
	if len(f.Payload) != FrameSize {
		return fmt.Errorf("sim: frame from %s is %d bytes, want %d", f.Device, len(f.Payload), FrameSize)
	}
	p := f.Payload
	dst.AddPoint("temperature", gateway.Float(float64(math.Float32frombits(binary.BigEndian.Uint32(p[0:])))), "C")
	dst.AddPoint("humidity", gateway.Float(float64(math.Float32frombits(binary.BigEndian.Uint32(p[4:])))), "%")
	dst.AddPoint("seq", gateway.Uint(uint64(binary.BigEndian.Uint32(p[8:]))), "")
	return nil
}

// Encode implements gateway.Codec.
func (Codec) Encode(m *gateway.Message, dst []byte) ([]byte, error) {
	t, ok1 := m.Point("temperature")
	h, ok2 := m.Point("humidity")
	s, ok3 := m.Point("seq")
	if !ok1 || !ok2 || !ok3 {
		return dst, errors.New("sim: encode needs points temperature, humidity and seq")
	}
	if s.Value.Uint() > math.MaxUint32 {
		return dst, fmt.Errorf("sim: encode: seq %d overflows uint32", s.Value.Uint())
	}
	return AppendFrame(dst, float32(t.Value.Float()), float32(h.Value.Float()), uint32(s.Value.Uint())), nil
}
