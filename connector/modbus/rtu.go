package modbus

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// Transport is how a device is reached.
type Transport uint8

// The transports. A device's Address is host:port for TCP and RTU over
// TCP, and the serial device path (e.g. /dev/ttyUSB0) for RTU.
const (
	TCP        Transport = iota // Modbus TCP (MBAP header), the default
	RTU                         // Modbus RTU on a serial line
	RTUOverTCP                  // Modbus RTU frames (with CRC) over a TCP stream
)

var transportNames = [...]string{"tcp", "rtu", "rtu-over-tcp"}

func (t Transport) String() string {
	if int(t) < len(transportNames) {
		return transportNames[t]
	}
	return fmt.Sprintf("transport(%d)", t)
}

// ParseTransport parses a transport name as written in YAML: "tcp",
// "rtu" or "rtu-over-tcp" (also "rtuovertcp").
func ParseTransport(s string) (Transport, error) {
	switch strings.ToLower(s) {
	case "", "tcp":
		return TCP, nil
	case "rtu":
		return RTU, nil
	case "rtu-over-tcp", "rtuovertcp", "rtu_over_tcp":
		return RTUOverTCP, nil
	}
	return 0, fmt.Errorf("unknown transport %q (want tcp, rtu or rtu-over-tcp)", s)
}

// Parity is the parity bit of a serial line.
type Parity uint8

// The parities. Modbus RTU's default is even parity.
const (
	ParityEven Parity = iota
	ParityNone
	ParityOdd
)

func (p Parity) String() string {
	switch p {
	case ParityEven:
		return "even"
	case ParityNone:
		return "none"
	case ParityOdd:
		return "odd"
	}
	return fmt.Sprintf("parity(%d)", p)
}

// ParseParity parses "even", "none" or "odd" (or E, N, O).
func ParseParity(s string) (Parity, error) {
	switch strings.ToLower(s) {
	case "", "even", "e":
		return ParityEven, nil
	case "none", "n":
		return ParityNone, nil
	case "odd", "o":
		return ParityOdd, nil
	}
	return 0, fmt.Errorf("unknown parity %q (want even, none or odd)", s)
}

// Serial is the line setting of an RTU device. Every device on one serial
// path must use the same setting.
type Serial struct {
	// Baud is the bit rate. Default 19200 (the Modbus default). Only
	// the standard rates (1200 ... 4000000) are accepted.
	Baud int
	// Parity defaults to even (the Modbus default; the zero value).
	Parity Parity
	// StopBits is 1 or 2. Default 1. Modbus asks for 2 without parity;
	// many devices use 1.
	StopBits int
}

func (s Serial) withDefaults() Serial {
	if s.Baud == 0 {
		s.Baud = 19200
	}
	if s.StopBits == 0 {
		s.StopBits = 1
	}
	return s
}

// charTime is the time one character takes on the line: start bit, 8 data
// bits, parity and stop bits.
func (s Serial) charTime() time.Duration {
	bits := 1 + 8 + s.StopBits
	if s.Parity != ParityNone {
		bits++
	}
	return time.Duration(bits) * time.Second / time.Duration(s.Baud)
}

// silence is the inter-frame gap t3.5: 3.5 character times, fixed at
// 1.75 ms above 19200 baud as the Modbus serial line specification says.
func (s Serial) silence() time.Duration {
	if s.Baud > 19200 {
		return 1750 * time.Microsecond
	}
	return s.charTime() * 7 / 2
}

// ErrCRC is an RTU frame whose CRC does not match its bytes (a line
// error). It is also ErrMalformedResponse.
var ErrCRC = fmt.Errorf("%w: CRC mismatch", ErrMalformedResponse)

// crc16 is the Modbus RTU CRC (polynomial 0xA001 reflected, initial
// 0xFFFF), sent low byte first.
func crc16(b []byte) uint16 {
	crc := uint16(0xffff)
	for _, x := range b {
		crc ^= uint16(x)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xa001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// appendRTU appends the RTU frame of pdu for unit: unit, pdu, CRC.
func appendRTU(dst []byte, unit uint8, pdu []byte) []byte {
	start := len(dst)
	dst = append(dst, unit)
	dst = append(dst, pdu...)
	return binary.LittleEndian.AppendUint16(dst, crc16(dst[start:]))
}

// rtuResponseLen reports the length of the RTU response frame that buf
// starts with, for a request of function fc: 0 while buf is too short to
// tell. An exception is 5 bytes; reads (1..4) carry a byte count; the
// write functions (5, 6, 15, 16) echo 4 bytes.
func rtuResponseLen(buf []byte, fc byte) (int, error) {
	if len(buf) < 2 {
		return 0, nil
	}
	switch buf[1] {
	case fc | 0x80:
		return 5, nil
	case fc:
	default:
		return 0, fmt.Errorf("%w: function 0x%02x in reply to 0x%02x", ErrMalformedResponse, buf[1], fc)
	}
	switch fc {
	case 1, 2, 3, 4:
		if len(buf) < 3 {
			return 0, nil
		}
		return 3 + int(buf[2]) + 2, nil
	case 5, 6, 15, 16:
		return 8, nil
	}
	return 0, fmt.Errorf("%w: function 0x%02x not supported", ErrMalformedResponse, fc)
}

// DecodeRTUResponse checks a complete RTU response frame for a request to
// unit with function fc and returns its PDU (function code and data). It
// returns ErrCRC for a CRC mismatch, an exception sentinel
// (ErrIllegalDataAddress ...) for an exception response, and
// ErrMalformedResponse for a frame of the wrong unit, function or length.
func DecodeRTUResponse(frame []byte, unit, fc byte) ([]byte, error) {
	n, err := rtuResponseLen(frame, fc)
	if err != nil {
		return nil, err
	}
	if n == 0 || len(frame) != n {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrMalformedResponse, len(frame), max(n, 5))
	}
	if got, want := binary.LittleEndian.Uint16(frame[n-2:]), crc16(frame[:n-2]); got != want {
		return nil, fmt.Errorf("%w (got 0x%04x, want 0x%04x)", ErrCRC, got, want)
	}
	if frame[0] != unit {
		return nil, fmt.Errorf("%w: reply from unit %d, asked %d", ErrMalformedResponse, frame[0], unit)
	}
	pdu := frame[1 : n-2]
	if pdu[0] == fc|0x80 {
		return nil, exceptionError(pdu[1])
	}
	return pdu, nil
}

// exceptionError maps an exception code to its sentinel.
func exceptionError(code byte) error {
	for _, e := range exceptions {
		if e.code == int(code) {
			return e.err
		}
	}
	return fmt.Errorf("modbus: exception %d", code)
}

// rtuPort is the byte stream under an RTU bus: a serial line or a TCP
// connection.
type rtuPort interface {
	io.ReadWriteCloser
	SetReadDeadline(time.Time) error
	// discardInput drops bytes received but not read (a late reply).
	discardInput() error
}

// rtuBus is one serial line (or RTU-over-TCP stream) shared by the units
// on it: one request at a time, the inter-frame silence before each, the
// port opened on first use and re-opened after an I/O error.
type rtuBus struct {
	transport Transport
	address   string
	serial    Serial
	timeout   time.Duration

	mu       sync.Mutex
	port     rtuPort
	lastIdle time.Time // end of the last frame on the line
	buf      []byte
	open     func() (rtuPort, error) // nil: the default for the transport
}

func newRTUBus(t Transport, address string, ser Serial, timeout time.Duration) *rtuBus {
	return &rtuBus{transport: t, address: address, serial: ser.withDefaults(), timeout: timeout}
}

func (b *rtuBus) openPort() (rtuPort, error) {
	if b.open != nil {
		return b.open()
	}
	if b.transport == RTU {
		return openSerial(b.address, b.serial)
	}
	c, err := net.DialTimeout("tcp", b.address, b.timeout)
	if err != nil {
		return nil, err
	}
	return tcpPort{c.(*net.TCPConn)}, nil
}

// frameGap is how long a reply may pause between two of its bytes before
// it counts as cut off: 3.5 character times, but at least 50 ms, since
// USB adapters and ptys deliver in bursts.
func (b *rtuBus) frameGap() time.Duration {
	if b.transport != RTU {
		return b.timeout
	}
	return max(50*time.Millisecond, b.serial.silence())
}

// close closes the port; the next request opens it again.
func (b *rtuBus) closeLocked() {
	if b.port != nil {
		_ = b.port.Close()
		b.port = nil
	}
}

func (b *rtuBus) shutdown() {
	b.mu.Lock()
	b.closeLocked()
	b.mu.Unlock()
}

// do sends pdu to unit and returns the reply's PDU (a copy).
func (b *rtuBus) do(unit uint8, pdu []byte) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.port == nil {
		p, err := b.openPort()
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", b.address, err)
		}
		b.port, b.lastIdle = p, time.Now()
	}
	if b.transport == RTU {
		if wait := time.Until(b.lastIdle.Add(b.serial.silence())); wait > 0 {
			time.Sleep(wait)
		}
	}
	if err := b.port.discardInput(); err != nil {
		b.closeLocked()
		return nil, fmt.Errorf("%s: %w", b.address, err)
	}
	b.buf = appendRTU(b.buf[:0], unit, pdu)
	if _, err := b.port.Write(b.buf); err != nil {
		b.closeLocked()
		return nil, fmt.Errorf("%s: write: %w", b.address, err)
	}
	out, err := b.readReply(unit, pdu[0])
	b.lastIdle = time.Now()
	return out, err
}

// readReply reads one reply frame. A reply that does not start within
// the timeout is ErrTimeout; one that stops in the middle for longer than
// frameGap is ErrMalformedResponse; I/O errors close the port.
func (b *rtuBus) readReply(unit, fc byte) ([]byte, error) {
	deadline := time.Now().Add(b.timeout)
	buf := b.buf[:0]
	var chunk [256]byte
	for {
		dl := deadline
		if len(buf) > 0 {
			if g := time.Now().Add(b.frameGap()); g.Before(dl) {
				dl = g
			}
		}
		_ = b.port.SetReadDeadline(dl)
		n, err := b.port.Read(chunk[:])
		buf = append(buf, chunk[:n]...)
		if need, lerr := rtuResponseLen(buf, fc); lerr != nil {
			b.buf = buf
			return nil, lerr
		} else if need > 0 && len(buf) >= need {
			b.buf = buf
			if len(buf) > need {
				return nil, fmt.Errorf("%w: %d bytes, want %d", ErrMalformedResponse, len(buf), need)
			}
			p, err := DecodeRTUResponse(buf, unit, fc)
			if err != nil {
				return nil, err
			}
			return append([]byte(nil), p...), nil
		}
		if err != nil {
			b.buf = buf
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if len(buf) == 0 {
					return nil, fmt.Errorf("%w (unit %d)", ErrTimeout, unit)
				}
				return nil, fmt.Errorf("%w: reply cut off after %d bytes", ErrMalformedResponse, len(buf))
			}
			b.closeLocked()
			return nil, fmt.Errorf("%s: read: %w", b.address, err)
		}
	}
}

// tcpPort is the RTU-over-TCP stream.
type tcpPort struct{ *net.TCPConn }

func (p tcpPort) discardInput() error {
	// A reply that came after its timeout would be read as the next
	// one's: drop what is buffered.
	var b [256]byte
	for {
		_ = p.SetReadDeadline(time.Now().Add(time.Millisecond))
		n, err := p.Read(b[:])
		if n > 0 {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// rtuClient is one unit on a bus; it implements client.
type rtuClient struct {
	bus  *rtuBus
	unit uint8
}

func (c *rtuClient) Close() error { return nil }

func (c *rtuClient) readRegisters(t Table, start, count uint16) ([]byte, error) {
	fc := byte(3)
	if t == InputRegisters {
		fc = 4
	}
	p, err := c.bus.do(c.unit, []byte{fc, byte(start >> 8), byte(start), byte(count >> 8), byte(count)})
	if err != nil {
		return nil, err
	}
	if int(p[1]) != 2*int(count) {
		return nil, fmt.Errorf("%w: %d bytes for %d registers", ErrMalformedResponse, p[1], count)
	}
	return p[2:], nil
}

func (c *rtuClient) readBits(t Table, start, count uint16) ([]byte, error) {
	fc := byte(1)
	if t == DiscreteInputs {
		fc = 2
	}
	p, err := c.bus.do(c.unit, []byte{fc, byte(start >> 8), byte(start), byte(count >> 8), byte(count)})
	if err != nil {
		return nil, err
	}
	if int(p[1]) != (int(count)+7)/8 {
		return nil, fmt.Errorf("%w: %d bytes for %d bits", ErrMalformedResponse, p[1], count)
	}
	out := p[2:]
	if r := count % 8; r != 0 {
		out[len(out)-1] &= 1<<r - 1 // spare bits are 0 in a frame
	}
	return out, nil
}

func (c *rtuClient) writeRegister(addr, v uint16) error {
	_, err := c.bus.do(c.unit, []byte{6, byte(addr >> 8), byte(addr), byte(v >> 8), byte(v)})
	return err
}

func (c *rtuClient) writeRegisters(addr uint16, vs []uint16) error {
	pdu := []byte{16, byte(addr >> 8), byte(addr), 0, byte(len(vs)), byte(2 * len(vs))}
	for _, v := range vs {
		pdu = append(pdu, byte(v>>8), byte(v))
	}
	_, err := c.bus.do(c.unit, pdu)
	return err
}

func (c *rtuClient) writeCoils(addr uint16, bits []bool) error {
	n := len(bits)
	pdu := []byte{15, byte(addr >> 8), byte(addr), byte(n >> 8), byte(n), byte((n + 7) / 8)}
	pdu = appendPacked(pdu, bits)
	_, err := c.bus.do(c.unit, pdu)
	return err
}
