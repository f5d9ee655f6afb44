package udpbatch

import (
	"errors"
	"net"
	"net/netip"
)

// MaxBatch bounds the slots of a Reader or Writer.
const MaxBatch = 1024

// Message is one slot of a batch.
type Message struct {
	// Buf is the slot's buffer; Read fills Buf[:N].
	Buf []byte
	// N is the length of the datagram read (at most len(Buf)).
	N int
	// Addr is the datagram's source (Reader) or destination (Writer).
	Addr netip.AddrPort
	// Truncated reports that the datagram was larger than Buf and was cut
	// (batched path only; the single path cannot tell).
	Truncated bool
}

// Data returns the bytes read into the slot.
func (m *Message) Data() []byte { return m.Buf[:m.N] }

// Reader reads up to n datagrams per call from one socket.
type Reader struct {
	c    *net.UDPConn
	msgs []Message
	sys  *sysBatch // nil: one datagram per call
}

// NewReader returns a reader with n slots of size bytes each. n of 1, or a
// platform without recvmmsg, reads one datagram per call with
// ReadFromUDPAddrPort.
func NewReader(c *net.UDPConn, n, size int) (*Reader, error) {
	if n < 1 || n > MaxBatch || size < 1 {
		return nil, errors.New("udpbatch: want 1..1024 slots of at least one byte")
	}
	r := &Reader{c: c, msgs: make([]Message, n)}
	for i := range r.msgs {
		r.msgs[i].Buf = make([]byte, size)
	}
	if n > 1 {
		r.sys = newSysBatch(c, n)
	}
	return r, nil
}

// Batched reports whether Read uses recvmmsg.
func (r *Reader) Batched() bool { return r.sys != nil && !r.sys.disabled }

// Slot returns slot i, so a caller can give it another buffer
// (SetBuffer) after keeping the one Read filled.
func (r *Reader) Slot(i int) *Message { return &r.msgs[i] }

// SetBuffer makes b the buffer of slot i from the next Read on.
func (r *Reader) SetBuffer(i int, b []byte) { r.msgs[i].Buf = b }

// Read waits for at least one datagram and returns the slots it filled,
// valid until the next Read. The error is the socket's (net.ErrClosed
// once it is closed).
func (r *Reader) Read() ([]Message, error) {
	if r.Batched() {
		k, err := r.sys.read(r.msgs)
		if !errors.Is(err, errNoSys) {
			return r.msgs[:k], err
		}
	}
	m := &r.msgs[0]
	n, from, err := r.c.ReadFromUDPAddrPort(m.Buf)
	if err != nil {
		return nil, err
	}
	m.N, m.Addr, m.Truncated = n, from, false
	return r.msgs[:1], nil
}

// Writer queues datagrams for one socket and sends them in batches.
type Writer struct {
	c    *net.UDPConn
	msgs []Message
	n    int // queued
	sys  *sysBatch
}

// NewWriter returns a writer that sends up to n datagrams per call. n of
// 1, or a platform without sendmmsg, sends each with WriteToUDPAddrPort.
func NewWriter(c *net.UDPConn, n int) (*Writer, error) {
	if n < 1 || n > MaxBatch {
		return nil, errors.New("udpbatch: want 1..1024 slots")
	}
	w := &Writer{c: c, msgs: make([]Message, n)}
	for i := range w.msgs {
		w.msgs[i].Buf = make([]byte, 0, 256)
	}
	if n > 1 {
		w.sys = newSysBatch(c, n)
	}
	return w, nil
}

// Batched reports whether Flush uses sendmmsg.
func (w *Writer) Batched() bool { return w.sys != nil && !w.sys.disabled }

// Queued is the number of datagrams waiting for Flush.
func (w *Writer) Queued() int { return w.n }

// Add copies b into the next slot, for to. With one slot, or when the
// slots are full, it sends at once (a full batch); the error is then
// Flush's.
func (w *Writer) Add(b []byte, to netip.AddrPort) error {
	if !w.Batched() {
		_, err := w.c.WriteToUDPAddrPort(b, to)
		return err
	}
	m := &w.msgs[w.n]
	m.Buf = append(m.Buf[:0], b...)
	m.N, m.Addr = len(b), to
	w.n++
	if w.n == len(w.msgs) {
		return w.Flush()
	}
	return nil
}

// Flush sends the queued datagrams. A datagram the kernel refuses is
// dropped, as a lost datagram would be; the first such error is returned
// after the others were sent.
func (w *Writer) Flush() error {
	if w.n == 0 {
		return nil
	}
	q := w.msgs[:w.n]
	w.n = 0
	if w.Batched() {
		err := w.sys.write(q)
		if !errors.Is(err, errNoSys) {
			return err
		}
	}
	var first error
	for i := range q {
		if _, err := w.c.WriteToUDPAddrPort(q[i].Buf[:q[i].N], q[i].Addr); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// errNoSys reports a kernel without the batched calls; the caller falls
// back to one datagram per call for good.
var errNoSys = errors.New("udpbatch: recvmmsg/sendmmsg not available")
