// Package modbus is a Modbus TCP and Modbus RTU connector (serial lines
// and RTU over TCP): it polls per-device register maps and writes
// registers and coils on downlink.
//
// The happy path:
//
//	c, _ := modbus.New(modbus.WithDevice(modbus.Device{Name: "plc1", Address: "10.0.0.5:502",
//		Ranges: []modbus.Range{{Table: modbus.HoldingRegisters, Address: 0, Count: 10}}}))
//	g, _ := gateway.New(gateway.WithConnector("plc", c), gateway.WithSink("cloud", sink))
//
// # Frame contract
//
// Frames follow the block contract of package codec/modbus, so its
// RegisterMap and the mapping codec decode them as they are. Each poll
// cycle yields one frame per read block (see Plan):
//
//   - Device is the device name.
//   - Topic names the block (the part after the device, as for every
//     connector): "<table>/<first address>", where table is
//     "hr" (holding registers), "ir" (input registers), "coil" (coils) or
//     "di" (discrete inputs), e.g. "hr/0" or "coil/16".
//   - Payload is the block's data as the Modbus response carries it: for
//     registers two bytes per register, big-endian, in address order; for
//     coils and discrete inputs the bits packed eight per byte, least
//     significant bit first (address Start is bit 0 of byte 0), the spare
//     bits of the last byte 0.
//
// With coalescing, one block may cover several configured ranges plus the
// gaps between them, so a register-map codec finds register A of a block
// starting at S at payload offset 2*(A-S), and bit A at bit (A-S)%8 of
// byte (A-S)/8. A packed frame does not carry its bit count: the register
// map says which bits matter. Plan therefore never lets a polled bit sit
// in the spare bits of another block's last byte (it merges such blocks).
//
// Downlink frames use the same topic form naming the first address to
// write, "hr/<address>" or "coil/<address>", and the same payload layout;
// a coil write covers whole bytes (8 coils per payload byte).
//
// # Coalescing
//
// Neighbouring ranges of one table are merged into one request when the
// gap between them is at most the configured gap and the result stays
// within the protocol limit (125 registers, 2000 bits). This trades extra
// bytes for fewer round trips; see WithCoalescing.
//
// # Failures
//
// Every device has its own connection and goroutine. Exception responses
// (errors.Is with ErrIllegalDataAddress and friends) are counted and logged
// with the device name; the cycle goes on. A timed-out request is retried;
// a request that still times out, a malformed reply or a dropped
// connection closes the connection, which is re-opened with exponential
// backoff and full jitter. The request that failed is sent once more on
// the new connection and the cycle goes on from there, so a device that
// drops its connection now and then loses no poll; when the broken
// connection had answered requests, that reconnect is immediate (once per
// cycle, so never faster than the device answers). The delay starts again
// from the minimum once a connection answered a request or stayed up for
// 10 s (WithBackoffReset, reconnect: in YAML): a device that serves
// requests between drops is reconnected quickly, one that never answers
// is backed off from. Each poll cycle runs under a context deadline.
//
// Warnings that would repeat on every poll or reconnect (an exception on
// a range, a lost connection, a frame the pipeline refused, a keepalive
// that could not be set) are written once per cause (device, block and
// exception code; device and failure) per minute; the next line of that
// cause carries suppressed=N, the repeats in between. The counters of
// Connector.Stats (and of /statz) count every one: exception responses
// in Exceptions (and Errors), malformed responses in Malformed.
//
// Table names in YAML ranges are those of the register-map codec's points
// (codec/modbus.ParseTableName): hr, ir, coil, di, or holding, input,
// coils, discrete and their long forms. A configuration error names the
// entry's YAML path and position, e.g.
// "connectors[0].modbus.devices[0].ranges[2].table: ... (gw.yaml:14:22)".
//
// The TCP connection has keepalive probes after 30 s idle, 30 s apart. The
// client library dials the socket itself with Go's default (15 s) and
// offers no dialer hook, so on Linux the connector sets the socket options
// on the connected socket right after the dial, finding it by its peer
// address among the process's sockets (another connection of the process
// to the same device gets the same setting). On other systems the
// connection keeps Go's default; steady polling keeps it verified in any
// case.
//
// # Modbus RTU
//
// A device with Transport RTU (transport: rtu in YAML) is a unit on a
// serial line: Address is the device path, Serial the line setting
// (default 19200 baud, 8 data bits, even parity, 1 stop bit; raw mode, no
// flow control, modem lines ignored; termios, Linux only). RTUOverTCP
// sends the same frames, with their CRC, over a TCP stream to a serial
// gateway. Devices on the same path (or address) share the line: one
// request at a time, each unit with its own poll schedule, ranges,
// coalescing and frames exactly as for TCP devices.
//
// Before each request on a serial line the bus keeps the inter-frame
// silence t3.5 (3.5 character times; 1.75 ms above 19200 baud) after the
// end of the last frame, and drops any bytes received meanwhile (a late
// reply). A reply is framed by its length (function code and byte count);
// it must start within the timeout, and once started may pause at most
// 3.5 character times or 50 ms, whichever is longer (USB adapters deliver
// in bursts), or it counts as malformed. A CRC mismatch is ErrCRC (also
// ErrMalformedResponse), counted in Malformed; a reply from another unit
// is malformed too.
//
// A unit that does not answer times out (ErrTimeout) and is backed off
// like an unreachable TCP device (WithBackoff); the line stays open and the
// other units keep being polled, each delayed by at most the timeout while
// the silent unit's request waits. The line is opened on first use and
// re-opened after an I/O error (a USB adapter unplugged, the RTU-over-TCP
// connection lost). Reconnects in Stats count these re-tries too.
package modbus
