package modbus

import (
	"context"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/backoff"
	"github.com/iotgw/gateway/internal/connstats"
	"github.com/iotgw/gateway/internal/lograte"
	"github.com/iotgw/gateway/internal/tcpkeepalive"
	"github.com/iotgw/gateway/internal/waitctx"
	mb "github.com/simonvetter/modbus"
)

// Errors callers branch on with errors.Is. Exception responses from a
// device map to the Err*Exception sentinels by their exception code.
var (
	ErrIllegalFunction        = errors.New("modbus: exception 1: illegal function")
	ErrIllegalDataAddress     = errors.New("modbus: exception 2: illegal data address")
	ErrIllegalDataValue       = errors.New("modbus: exception 3: illegal data value")
	ErrServerDeviceFailure    = errors.New("modbus: exception 4: server device failure")
	ErrServerDeviceBusy       = errors.New("modbus: exception 6: server device busy")
	ErrGatewayPathUnavailable = errors.New("modbus: exception 10: gateway path unavailable")
	ErrGatewayTargetFailed    = errors.New("modbus: exception 11: gateway target device failed to respond")
	// ErrTimeout is a request that got no answer within the timeout.
	ErrTimeout = errors.New("modbus: request timed out")
	// ErrMalformedResponse is a reply the client could not parse (wrong
	// transaction or protocol id, short or inconsistent frame).
	ErrMalformedResponse = errors.New("modbus: malformed response")
	// ErrNotConnected is a read or write to a device whose connection is
	// down (the connector is reconnecting).
	ErrNotConnected = errors.New("modbus: device not connected")
)

// exceptions are the exception sentinels by their Modbus exception code.
var exceptions = []struct {
	code int
	err  error
}{
	{1, ErrIllegalFunction}, {2, ErrIllegalDataAddress}, {3, ErrIllegalDataValue},
	{4, ErrServerDeviceFailure}, {6, ErrServerDeviceBusy}, {10, ErrGatewayPathUnavailable},
	{11, ErrGatewayTargetFailed},
}

// exceptionCode returns the Modbus exception code err carries, 0 when
// err is not an exception response.
func exceptionCode(err error) int {
	for _, e := range exceptions {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return 0
}

// isException reports whether err is a Modbus exception response: a
// well-formed answer saying no, which does not need a reconnect.
func isException(err error) bool { return exceptionCode(err) != 0 }

// mapError turns the client library's errors into this package's
// sentinels, keeping the original in the chain.
func mapError(err error) error {
	var ours error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, mb.ErrIllegalFunction):
		ours = ErrIllegalFunction
	case errors.Is(err, mb.ErrIllegalDataAddress):
		ours = ErrIllegalDataAddress
	case errors.Is(err, mb.ErrIllegalDataValue):
		ours = ErrIllegalDataValue
	case errors.Is(err, mb.ErrServerDeviceFailure):
		ours = ErrServerDeviceFailure
	case errors.Is(err, mb.ErrServerDeviceBusy):
		ours = ErrServerDeviceBusy
	case errors.Is(err, mb.ErrGWPathUnavailable):
		ours = ErrGatewayPathUnavailable
	case errors.Is(err, mb.ErrGWTargetFailedToRespond):
		ours = ErrGatewayTargetFailed
	case errors.Is(err, mb.ErrRequestTimedOut):
		ours = ErrTimeout
	case errors.Is(err, mb.ErrProtocolError), errors.Is(err, mb.ErrBadTransactionId),
		errors.Is(err, mb.ErrUnknownProtocolId), errors.Is(err, mb.ErrShortFrame),
		errors.Is(err, mb.ErrBadUnitId), errors.Is(err, mb.ErrUnexpectedParameters),
		errors.Is(err, io.ErrUnexpectedEOF):
		ours = ErrMalformedResponse
	default:
		return err
	}
	return fmt.Errorf("%w (%v)", ours, err)
}

// Device is one Modbus server (a unit) the connector polls.
type Device struct {
	// Name is the device id on frames. Required, unique.
	Name string
	// Transport is TCP (the default), RTU or RTUOverTCP.
	Transport Transport
	// Address is host:port of the Modbus TCP server or RTU-over-TCP
	// gateway, or the serial device path for RTU (e.g. /dev/ttyUSB0).
	// Required. RTU devices with the same path (or RTU-over-TCP devices
	// with the same address) share one line: one request at a time.
	Address string
	// Serial is the line setting of an RTU device; see Serial for the
	// defaults (19200 baud, even parity, 1 stop bit).
	Serial Serial
	// UnitID is the Modbus unit (slave) id. Default 1. Units sharing a
	// line must differ.
	UnitID uint8
	// Interval is the poll period. Default 1s.
	Interval time.Duration
	// Ranges are the addresses to poll.
	Ranges []Range
}

// Stats are the connector's counters; see Connector.Stats.
type Stats = connstats.Stats

// Connector polls Modbus TCP and RTU devices and writes to them. Each
// device has its own goroutine, and each TCP device its own connection,
// so a slow or broken TCP device never delays another; RTU devices on one
// line take turns on it (see the package doc).
type Connector struct {
	s     settings
	stats connstats.Table
	// lim keeps repeated warnings (an exception on every poll, a device
	// that keeps dropping its connection) to one line per cause per
	// interval, with the count of the suppressed ones.
	lim *lograte.Limiter

	mu      sync.Mutex
	devices map[string]*deviceRun
	buses   []*rtuBus // shared RTU lines
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

var (
	_ gateway.DeviceConnector = (*Connector)(nil)
	_ gateway.Downlinker      = (*Connector)(nil)
)

type deviceRun struct {
	c      *Connector
	dev    Device
	blocks []Block
	topics []string
	stats  *connstats.Counters

	bus *rtuBus // the shared line of an RTU or RTU-over-TCP device

	mu     sync.Mutex
	client client // nil while disconnected

	// Owned by the run goroutine: the reconnect backoff and the requests
	// the current connection answered.
	bo     backoff.Backoff
	served int

	// polls counts poll cycles started, pollsDone those in which every
	// block got an answer (data or exception); maxAttempt is the largest
	// backoff attempt a reconnect delay was drawn at. Read by tests.
	polls, pollsDone atomic.Uint64
	maxAttempt       atomic.Int64
}

// New builds a connector. It opens no connection until Connect.
func New(opts ...Option) (*Connector, error) {
	s := defaultSettings()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&s); err != nil {
			return nil, fmt.Errorf("modbus: %w", err)
		}
	}
	c := &Connector{s: s, devices: map[string]*deviceRun{}, lim: lograte.New(logEvery)}
	buses := map[string]*rtuBus{}
	units := map[string]string{}
	for _, d := range s.devices {
		blocks := Plan(d.Ranges, s.coalesce, s.maxGap)
		topics := make([]string, len(blocks))
		for i, b := range blocks {
			topics[i] = b.Topic()
		}
		run := &deviceRun{c: c, dev: d, blocks: blocks, topics: topics, stats: c.stats.Device(d.Name)}
		if d.Transport != TCP {
			key := d.Transport.String() + " " + d.Address
			bus := buses[key]
			switch {
			case bus == nil:
				bus = newRTUBus(d.Transport, d.Address, d.Serial, s.timeout)
				buses[key] = bus
				c.buses = append(c.buses, bus)
			case d.Transport == RTU && bus.serial != d.Serial.withDefaults():
				return nil, fmt.Errorf("modbus: device %s: line %s: serial setting %+v differs from another device's %+v",
					d.Name, d.Address, d.Serial.withDefaults(), bus.serial)
			}
			ukey := fmt.Sprintf("%s %d", key, d.UnitID)
			if other, ok := units[ukey]; ok {
				return nil, fmt.Errorf("modbus: device %s: unit id %d is also device %s's on %s", d.Name, d.UnitID, other, d.Address)
			}
			units[ukey] = d.Name
			run.bus = bus
		}
		c.devices[d.Name] = run
	}
	return c, nil
}

// Blocks returns the read requests one poll cycle of device sends, after
// coalescing.
func (c *Connector) Blocks(device string) []Block {
	if d := c.devices[device]; d != nil {
		return append([]Block(nil), d.blocks...)
	}
	return nil
}

// Stats returns the connector's and each device's counters. Requests and
// latency count Modbus round trips; Malformed counts unparsable replies;
// Reconnects counts connections re-established after a loss.
func (c *Connector) Stats() Stats { return c.stats.Stats() }

// StatsReport implements gateway.StatsReporter: the totals and at most
// maxDevices devices (see connstats.Report).
func (c *Connector) StatsReport(maxDevices int) any { return c.stats.Report(maxDevices) }

// RegisterMetrics implements gateway.MetricsSource: the connector's totals
// (frames, bytes, problems by reason, sessions, mean latency).
func (c *Connector) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	return c.stats.RegisterMetrics(m, label...)
}

var _ gateway.StatsReporter = (*Connector)(nil)

// Connect starts one poller per device. Unreachable devices do not fail
// Connect: their pollers retry with backoff.
func (c *Connector) Connect(_ context.Context, up gateway.Uplink) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		return errors.New("modbus: already connected")
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	for _, d := range c.devices {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			d.run(ctx, up)
		}()
	}
	return nil
}

// Disconnect stops the pollers, closes the connections and waits.
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
		return fmt.Errorf("modbus: disconnect: %w", err)
	}
	for _, b := range c.buses {
		b.shutdown()
	}
	return nil
}

func (d *deviceRun) log() *slog.Logger { return d.c.s.logger }

// logEvery is how often a repeated warning of one cause is written.
const logEvery = time.Minute

// run keeps a connection to the device and polls it until ctx ends. When
// the connection breaks in the middle of a poll cycle, the failed block is
// read once more on the next connection before the cycle's remaining
// blocks, so a device that drops a connection now and then loses no poll;
// if the broken connection had answered requests, without a delay.
func (d *deviceRun) run(ctx context.Context, up gateway.Uplink) {
	s := d.c.s
	d.bo = backoff.Backoff{Min: s.backoffMin, Max: s.backoffMax, Stable: s.stable, ResetAfter: s.resetAfter}
	connected := false
	resume := -1 // block of an interrupted cycle to resume at
	t := time.NewTicker(d.dev.Interval)
	defer t.Stop()
	for ctx.Err() == nil {
		from := resume
		resume = -1
		client, err := d.open()
		what, key := "modbus device unreachable; retrying", "connect:"+d.dev.Name
		if err == nil {
			if connected {
				d.stats.Reconnect()
				d.c.stats.Total.Reconnect()
			}
			connected = true
			d.bo.Up()
			d.served = 0
			d.setClient(client)
			resume, err = d.pollLoop(ctx, client, up, from, t)
			d.setClient(nil)
			_ = client.Close()
			what, key = "modbus device connection lost; reconnecting", "lost:"+d.dev.Name
		}
		if ctx.Err() != nil {
			return
		}
		d.stats.Error()
		d.c.stats.Total.Error()
		wait := d.bo.Next()
		if resume >= 0 && d.served > 0 && d.bo.Attempt() == 1 {
			// A connection that answered requests broke in the middle of
			// a cycle: reconnect at once to finish it. At most once per
			// cycle, and only after answered requests, so this never
			// reconnects faster than the device answers.
			wait = 0
		}
		if a := int64(d.bo.Attempt()); a > d.maxAttempt.Load() {
			d.maxAttempt.Store(a)
		}
		d.c.lim.Log(ctx, d.log(), slog.LevelWarn, key, what, "device", d.dev.Name,
			"address", d.dev.Address, "err", err, "retry_in", wait.Round(time.Millisecond))
		if !backoff.Sleep(ctx, wait) {
			return
		}
	}
}

func (d *deviceRun) open() (client, error) {
	if d.bus != nil {
		// The line is opened by its first request and stays open while
		// units on it time out; an I/O error closes it.
		return &rtuClient{bus: d.bus, unit: d.dev.UnitID}, nil
	}
	client, err := mb.NewClient(&mb.ClientConfiguration{
		URL:     "tcp://" + d.dev.Address,
		Timeout: d.c.s.timeout,
		Logger:  discardLogger(),
	})
	if err != nil {
		return nil, fmt.Errorf("modbus %s: %w", d.dev.Name, err)
	}
	if err := client.Open(); err != nil {
		return nil, fmt.Errorf("modbus %s: connect %s: %w", d.dev.Name, d.dev.Address, err)
	}
	if err := client.SetUnitId(d.dev.UnitID); err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("modbus %s: unit id: %w", d.dev.Name, err)
	}
	d.setKeepAlive()
	return tcpClient{client}, nil
}

// setKeepAlive gives the connection the gateway's TCP keepalive (30 s
// idle and interval). The client library dials the socket itself with
// Go's default (15 s) and offers no dialer hook, so on Linux the socket is
// found by its peer address right after the dial and set in place.
func (d *deviceRun) setKeepAlive() {
	var peers []netip.AddrPort
	if ap, err := netip.ParseAddrPort(d.dev.Address); err == nil {
		peers = append(peers, ap)
	} else if host, port, err := net.SplitHostPort(d.dev.Address); err == nil {
		p, perr := strconv.ParseUint(port, 10, 16)
		ctx, cancel := context.WithTimeout(context.Background(), d.c.s.timeout)
		ips, lerr := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		cancel()
		if perr == nil && lerr == nil {
			for _, ip := range ips {
				peers = append(peers, netip.AddrPortFrom(ip.Unmap(), uint16(p)))
			}
		}
	}
	n, err := tcpkeepalive.SetConnectedTo(peers)
	switch {
	case errors.Is(err, errors.ErrUnsupported):
	case err != nil || n == 0:
		d.c.lim.Log(context.Background(), d.log(), slog.LevelWarn, "keepalive:"+d.dev.Name,
			"modbus: TCP keepalive not set; the connection keeps Go's default", "device", d.dev.Name,
			"address", d.dev.Address, "sockets", n, "err", err)
	}
}

func (d *deviceRun) setClient(c client) {
	d.mu.Lock()
	d.client = c
	d.mu.Unlock()
}

func (d *deviceRun) currentClient() client {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.client
}

// pollLoop polls every interval until the connection breaks (returned
// error) or ctx ends (nil). It first finishes an interrupted cycle from
// block from, if from >= 0. When the connection breaks in a cycle it
// started, it returns the block to resume at on the next connection;
// otherwise -1, so a block is retried once.
func (d *deviceRun) pollLoop(ctx context.Context, client client, up gateway.Uplink, from int, t *time.Ticker) (int, error) {
	// Closing the client unblocks a request in flight when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = client.Close() })
	defer stop()
	if from >= 0 {
		// The ticker outlives connections, so the next cycle keeps to the
		// schedule: it starts at once if a tick passed during the outage.
		if _, err := d.cycle(ctx, client, up, from, true); err != nil {
			return -1, err
		}
		select {
		case <-ctx.Done():
			return -1, nil
		case <-t.C:
		}
	} else {
		// A new connection polls at once; a tick that passed while
		// connecting is not a second cycle.
		select {
		case <-t.C:
		default:
		}
	}
	for {
		d.polls.Add(1)
		if resume, err := d.cycle(ctx, client, up, 0, false); err != nil {
			return resume, err
		}
		select {
		case <-ctx.Done():
			return -1, nil
		case <-t.C:
		}
	}
}

// cycleBudget bounds one poll cycle: every block may use all its retries
// and the pause.
func (d *deviceRun) cycleBudget() time.Duration {
	s := d.c.s
	per := s.timeout*time.Duration(s.retries+1) + s.pause
	return per*time.Duration(len(d.blocks)) + time.Second
}

// cycle reads every block from block from on once and delivers a frame
// per block. Exception responses are counted and logged (one line per
// block and exception code per interval) and the cycle goes on; a
// transport failure ends the cycle with an error so the caller reconnects,
// and the index of the failed block to resume at (-1 when resumed is set:
// the cycle resumes an earlier one, which has had its retry).
func (d *deviceRun) cycle(ctx context.Context, client client, up gateway.Uplink, from int, resumed bool) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, d.cycleBudget())
	defer cancel()
	for i := from; i < len(d.blocks); i++ {
		b := d.blocks[i]
		if i > from && d.c.s.pause > 0 && !backoff.Sleep(cctx, d.c.s.pause) {
			return -1, nil
		}
		f := gateway.AcquireFrame()
		var err error
		for attempt := 0; attempt <= d.c.s.retries; attempt++ {
			if cctx.Err() != nil {
				err = cctx.Err()
				break
			}
			f.Payload, err = d.read(client, b, f.Payload[:0])
			if err == nil || isException(err) {
				d.bo.Success() // the connection served the request
				d.served++
			}
			if err == nil || isException(err) || !errors.Is(err, ErrTimeout) {
				break
			}
		}
		if err != nil {
			f.Release()
			if ctx.Err() != nil {
				return -1, nil
			}
			d.stats.Error()
			d.c.stats.Total.Error()
			if errors.Is(err, ErrMalformedResponse) {
				d.stats.Malformed()
				d.c.stats.Total.Malformed()
			}
			err = fmt.Errorf("modbus %s: read %s: %w", d.dev.Name, b, err)
			if code := exceptionCode(err); code != 0 {
				d.stats.Exception()
				d.c.stats.Total.Exception()
				d.c.lim.Log(ctx, d.log(), slog.LevelWarn, "exception:"+d.dev.Name+":"+b.String()+":"+strconv.Itoa(code),
					"modbus exception", "device", d.dev.Name, "block", b.String(), "code", code, "err", err)
				continue
			}
			if resumed {
				return -1, err
			}
			return i, err
		}
		f.Device, f.Topic = d.dev.Name, d.topics[i]
		n := len(f.Payload)
		if err := up.Deliver(ctx, f); err != nil {
			if ctx.Err() != nil {
				return -1, nil
			}
			d.stats.Error()
			d.c.stats.Total.Error()
			d.c.lim.Log(ctx, d.log(), slog.LevelWarn, "refused:"+d.dev.Name+":"+b.String(),
				"modbus frame not accepted", "device", d.dev.Name, "block", b.String(), "err", err)
			continue
		}
		d.stats.Frame(n)
		d.c.stats.Total.Frame(n)
	}
	d.pollsDone.Add(1)
	return -1, nil
}

// read performs one request and appends the block's bytes to dst as the
// Modbus response carries them: registers big-endian, bits packed eight
// per byte, least significant bit first, spare bits of the last byte 0.
func (d *deviceRun) read(client client, b Block, dst []byte) ([]byte, error) {
	start := time.Now()
	var err error
	var raw []byte
	switch b.Table {
	case HoldingRegisters, InputRegisters:
		raw, err = client.readRegisters(b.Table, b.Start, b.Count)
		if err == nil && len(raw) != 2*int(b.Count) {
			err = fmt.Errorf("%w: %d bytes for %d registers", ErrMalformedResponse, len(raw), b.Count)
		}
	default:
		raw, err = client.readBits(b.Table, b.Start, b.Count)
		if err == nil && len(raw) != (int(b.Count)+7)/8 {
			err = fmt.Errorf("%w: %d bytes for %d bits", ErrMalformedResponse, len(raw), b.Count)
		}
	}
	dst = append(dst, raw...)
	lat := time.Since(start)
	d.stats.Latency(lat)
	d.c.stats.Total.Latency(lat)
	return dst, mapError(err)
}

// Read performs one read of b on device now, outside the poll schedule,
// and returns the bytes in the frame payload format.
func (c *Connector) Read(ctx context.Context, device string, b Block) ([]byte, error) {
	d := c.devices[device]
	if d == nil {
		return nil, fmt.Errorf("modbus: device %q: %w", device, gateway.ErrNoRoute)
	}
	if b.Count == 0 || int(b.Count) > b.Table.maxPerRequest() {
		return nil, fmt.Errorf("modbus %s: read %s: count must be 1..%d", device, b, b.Table.maxPerRequest())
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	client := d.currentClient()
	if client == nil {
		return nil, fmt.Errorf("modbus %s: %w", device, ErrNotConnected)
	}
	out, err := d.read(client, b, nil)
	if err != nil {
		return nil, fmt.Errorf("modbus %s: read %s: %w", device, b, err)
	}
	return out, nil
}

// Write implements gateway.Downlinker. f.Device names the device and
// f.Topic the first address, as "hr/<address>" or "coil/<address>" (the
// block topics of package codec/modbus, whose Encode builds the payload).
// The payload for holding registers is big-endian register bytes (2 bytes:
// function 6, more: function 16); for coils it is packed eight per byte,
// least significant bit first, and writes 8*len(payload) coils with
// function 15 (the payload carries no coil count, so a coil write covers
// whole bytes). Input registers and discrete inputs are read-only
// (ErrNotSupported).
func (c *Connector) Write(ctx context.Context, f *gateway.Frame) error {
	d := c.devices[f.Device]
	if d == nil {
		return fmt.Errorf("modbus: write: device %q: %w", f.Device, gateway.ErrNoRoute)
	}
	w, err := ParseWrite(f.Topic, f.Payload)
	if err != nil {
		return fmt.Errorf("modbus %s: write: %w", f.Device, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	client := d.currentClient()
	if client == nil {
		return fmt.Errorf("modbus %s: write %s: %w", f.Device, f.Topic, ErrNotConnected)
	}
	start := time.Now()
	switch {
	case w.Table == HoldingRegisters && len(w.Registers) == 1:
		err = client.writeRegister(w.Address, w.Registers[0])
	case w.Table == HoldingRegisters:
		err = client.writeRegisters(w.Address, w.Registers)
	default:
		err = client.writeCoils(w.Address, w.Coils)
	}
	d.stats.Latency(time.Since(start))
	if err != nil {
		d.stats.Error()
		c.stats.Total.Error()
		return fmt.Errorf("modbus %s: write %s: %w", f.Device, f.Topic, mapError(err))
	}
	return nil
}

// WriteRequest is a parsed downlink write.
type WriteRequest struct {
	Table     Table
	Address   uint16
	Registers []uint16 // holding registers
	Coils     []bool   // coils
}

// ParseWrite parses a downlink topic and payload (see Connector.Write).
func ParseWrite(topic string, payload []byte) (WriteRequest, error) {
	t, addr, err := ParseTopic(topic)
	if err != nil {
		return WriteRequest{}, err
	}
	w := WriteRequest{Table: t, Address: addr}
	switch t {
	case HoldingRegisters:
		n := len(payload) / 2
		if len(payload) == 0 || len(payload)%2 != 0 {
			return w, fmt.Errorf("topic %s: payload of %d bytes: want an even, non-zero number of register bytes", topic, len(payload))
		}
		if n > 123 {
			return w, fmt.Errorf("topic %s: %d registers: at most 123 per write", topic, n)
		}
		if int(addr)+n > 1<<16 {
			return w, fmt.Errorf("topic %s: %d registers run past address 65535", topic, n)
		}
		w.Registers = make([]uint16, n)
		for i := range w.Registers {
			w.Registers[i] = uint16(payload[2*i])<<8 | uint16(payload[2*i+1])
		}
	case Coils:
		n := 8 * len(payload)
		if n == 0 || n > 1968 {
			return w, fmt.Errorf("topic %s: payload of %d bytes: want 1..246 bytes of packed coils (8 per byte)", topic, len(payload))
		}
		if int(addr)+n > 1<<16 {
			return w, fmt.Errorf("topic %s: %d coils run past address 65535", topic, n)
		}
		w.Coils = make([]bool, n)
		for i := range w.Coils {
			w.Coils[i] = payload[i/8]>>(i%8)&1 != 0
		}
	default:
		return w, fmt.Errorf("topic %s: %s is read-only: %w", topic, t, gateway.ErrNotSupported)
	}
	return w, nil
}

// appendPacked appends bits packed eight per byte, least significant bit
// first, as a Modbus coil or discrete input response carries them.
func appendPacked(dst []byte, bits []bool) []byte {
	for i := 0; i < len(bits); i += 8 {
		var b byte
		for k, v := range bits[i:min(i+8, len(bits))] {
			if v {
				b |= 1 << k
			}
		}
		dst = append(dst, b)
	}
	return dst
}

// client is one device's connection: a Modbus TCP client, or a unit on a
// shared RTU line. Reads return the bytes as the response carries them.
type client interface {
	readRegisters(t Table, start, count uint16) ([]byte, error)
	readBits(t Table, start, count uint16) ([]byte, error)
	writeRegister(addr, v uint16) error
	writeRegisters(addr uint16, vs []uint16) error
	writeCoils(addr uint16, bits []bool) error
	Close() error
}

// tcpClient is a Modbus TCP connection.
type tcpClient struct{ c *mb.ModbusClient }

func (t tcpClient) Close() error { return t.c.Close() }

func (t tcpClient) readRegisters(tb Table, start, count uint16) ([]byte, error) {
	rt := mb.HOLDING_REGISTER
	if tb == InputRegisters {
		rt = mb.INPUT_REGISTER
	}
	return t.c.ReadRawBytes(start, 2*count, rt)
}

func (t tcpClient) readBits(tb Table, start, count uint16) ([]byte, error) {
	var bits []bool
	var err error
	if tb == Coils {
		bits, err = t.c.ReadCoils(start, count)
	} else {
		bits, err = t.c.ReadDiscreteInputs(start, count)
	}
	if err == nil && len(bits) != int(count) {
		return nil, fmt.Errorf("%w: %d bits for %d requested", ErrMalformedResponse, len(bits), count)
	}
	return appendPacked(nil, bits), err
}

func (t tcpClient) writeRegister(addr, v uint16) error { return t.c.WriteRegister(addr, v) }
func (t tcpClient) writeRegisters(addr uint16, vs []uint16) error {
	return t.c.WriteRegisters(addr, vs)
}
func (t tcpClient) writeCoils(addr uint16, bits []bool) error { return t.c.WriteCoils(addr, bits) }
