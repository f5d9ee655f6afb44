package sim

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/simonvetter/modbus"
)

// ModbusDevice is a simulated Modbus TCP device: a real Modbus server on a
// local address whose holding registers change over time, for demos and
// tests of pollers. Register image:
//
//	hr[0]  temperature x10, signed (°C)
//	hr[1]  humidity x10 (%)
//	hr[2]  seconds since start, low 16 bits
//	hr[10] setpoint x10, signed; writable (downlink)
//	coil[0] pump running; writable
//
// Other holding registers up to hr[31] read as 0 and are writable; reads
// beyond answer with an illegal-address exception.
type ModbusDevice struct {
	mu     sync.Mutex
	srv    *modbus.ModbusServer
	addr   string
	start  time.Time
	hr     [32]uint16
	coils  [8]bool
	writes int
}

// NewModbusDevice returns a device that serves on Start.
func NewModbusDevice() *ModbusDevice { return &ModbusDevice{} }

// Start listens on addr ("127.0.0.1:5502"; port 0 picks a free one).
func (d *ModbusDevice) Start(addr string) error {
	// The server library takes a URL and does not report the bound port,
	// so resolve port 0 first.
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("sim modbus: address %q: %w", addr, err)
	}
	if port == "0" {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return fmt.Errorf("sim modbus: %w", err)
		}
		port = strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		addr = net.JoinHostPort(host, port)
	}
	srv, err := modbus.NewServer(&modbus.ServerConfiguration{URL: "tcp://" + addr, Timeout: 30 * time.Second, MaxClients: 16}, d)
	if err != nil {
		return fmt.Errorf("sim modbus: %w", err)
	}
	d.mu.Lock()
	d.start = time.Now()
	d.hr[10] = 215
	d.mu.Unlock()
	if err := srv.Start(); err != nil {
		return fmt.Errorf("sim modbus: listen %s: %w", addr, err)
	}
	d.mu.Lock()
	d.srv, d.addr = srv, addr
	d.mu.Unlock()
	return nil
}

// Addr is the address the device serves on once started.
func (d *ModbusDevice) Addr() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addr
}

// Writes counts register and coil writes received.
func (d *ModbusDevice) Writes() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes
}

// Close stops the server.
func (d *ModbusDevice) Close() error {
	d.mu.Lock()
	srv := d.srv
	d.srv = nil
	d.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Stop()
}

// refresh updates the live readings; called with d.mu held.
func (d *ModbusDevice) refresh() {
	s := time.Since(d.start).Seconds()
	d.hr[0] = uint16(int16(math.Round((21 + 4*math.Sin(s/30)) * 10)))
	d.hr[1] = uint16(math.Round((45 + 10*math.Cos(s/45)) * 10))
	d.hr[2] = uint16(int64(s))
}

// HandleHoldingRegisters implements modbus.RequestHandler.
func (d *ModbusDevice) HandleHoldingRegisters(req *modbus.HoldingRegistersRequest) ([]uint16, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	end := int(req.Addr) + int(req.Quantity)
	if end > len(d.hr) {
		return nil, modbus.ErrIllegalDataAddress
	}
	if req.IsWrite {
		copy(d.hr[req.Addr:end], req.Args)
		d.writes++
		return nil, nil
	}
	d.refresh()
	return append([]uint16(nil), d.hr[req.Addr:end]...), nil
}

// HandleCoils implements modbus.RequestHandler.
func (d *ModbusDevice) HandleCoils(req *modbus.CoilsRequest) ([]bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	end := int(req.Addr) + int(req.Quantity)
	if end > len(d.coils) {
		return nil, modbus.ErrIllegalDataAddress
	}
	if req.IsWrite {
		copy(d.coils[req.Addr:end], req.Args)
		d.writes++
		return nil, nil
	}
	return append([]bool(nil), d.coils[req.Addr:end]...), nil
}

// HandleDiscreteInputs implements modbus.RequestHandler; the device has none.
func (d *ModbusDevice) HandleDiscreteInputs(*modbus.DiscreteInputsRequest) ([]bool, error) {
	return nil, modbus.ErrIllegalDataAddress
}

// HandleInputRegisters implements modbus.RequestHandler; the device has none.
func (d *ModbusDevice) HandleInputRegisters(*modbus.InputRegistersRequest) ([]uint16, error) {
	return nil, modbus.ErrIllegalDataAddress
}

var _ modbus.RequestHandler = (*ModbusDevice)(nil)

var errNotStarted = errors.New("sim modbus: not started")

// Check reports whether the device is serving.
func (d *ModbusDevice) Check() error {
	if d.Addr() == "" {
		return errNotStarted
	}
	return nil
}
