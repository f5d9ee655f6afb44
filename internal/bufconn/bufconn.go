// Package bufconn cuts the system calls an MQTT library makes on a
// connection it reads and writes a packet at a time, without changing the
// library:
//
//   - Held buffers writes while its owner processes a batch of packets
//     (Hold ... Release) and writes them in one call at the end: the
//     listener's PUBACKs for a read buffer full of PUBLISHes. Outside a
//     batch, writes go straight through.
//   - Coalesced reads through a buffer and writes from a goroutine of its
//     own: a library that writes each packet as soon as it has it (paho's
//     PUBLISHes and PUBACKs) fills a buffer while the previous write is in
//     the kernel, and the next write sends all of it.
//
// Both unwrap (Unwrap) to the connection they wrap, and pass CloseWrite
// on after flushing, so that code that type-asserts a connection (for a
// *tls.Conn, or for CloseWrite) still reaches the real one.
package bufconn

import (
	"bufio"
	"errors"
	"net"
	"runtime"
	"sync"
	"time"
)

// Unwrap returns the connection c wraps, through any number of Held and
// Coalesced layers, or c itself.
func Unwrap(c net.Conn) net.Conn {
	for {
		u, ok := c.(interface{ Unwrap() net.Conn })
		if !ok {
			return c
		}
		c = u.Unwrap()
	}
}

// Held is a net.Conn whose writes can be held back and sent together.
type Held struct {
	net.Conn
	mu   sync.Mutex
	hold int
	buf  []byte
	err  error // a failed flush: returned by the writes after it
}

// NewHeld wraps c.
func NewHeld(c net.Conn) *Held { return &Held{Conn: c} }

// Unwrap returns the wrapped connection.
func (h *Held) Unwrap() net.Conn { return h.Conn }

// Hold starts a batch: writes are buffered until the matching Release.
func (h *Held) Hold() {
	h.mu.Lock()
	h.hold++
	h.mu.Unlock()
}

// Release ends a batch and, when it was the last one held, writes what
// was buffered in one call. It returns the error of that write.
func (h *Held) Release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hold--
	if h.hold > 0 {
		return nil
	}
	return h.flushLocked()
}

func (h *Held) flushLocked() error {
	if len(h.buf) == 0 {
		return nil
	}
	if h.err != nil {
		return h.err
	}
	_, err := h.Conn.Write(h.buf)
	h.buf = h.buf[:0]
	if cap(h.buf) > 64<<10 {
		h.buf = nil // a one-off burst does not pin its buffer
	}
	if err != nil {
		h.err = err
	}
	return err
}

// Write buffers p while a batch is held, and writes it (after anything
// buffered) otherwise. A buffered write reports success; the error of the
// write that sends it is returned by Release and by the writes after it.
func (h *Held) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return 0, h.err
	}
	if h.hold > 0 {
		h.buf = append(h.buf, p...)
		return len(p), nil
	}
	if len(h.buf) > 0 {
		h.buf = append(h.buf, p...)
		return len(p), h.flushLocked()
	}
	return h.Conn.Write(p)
}

// Close writes what is buffered, even while held (a DISCONNECT written
// before the connection is closed must still leave), and closes the
// wrapped connection.
func (h *Held) Close() error {
	h.mu.Lock()
	_ = h.flushLocked()
	h.err = net.ErrClosed
	h.mu.Unlock()
	return h.Conn.Close()
}

// CloseWrite flushes what is buffered and half-closes the wrapped
// connection, when it can be half-closed.
func (h *Held) CloseWrite() error {
	h.mu.Lock()
	_ = h.flushLocked()
	h.mu.Unlock()
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Coalesced is a net.Conn that reads through a buffer and writes from a
// goroutine of its own, sending everything written since its last write
// in one call.
type Coalesced struct {
	net.Conn
	r *bufio.Reader

	mu      sync.Mutex
	cond    sync.Cond // signalled when the writer took the buffer
	buf     []byte    // written, not yet taken by the writer
	spare   []byte
	err     error
	closing bool
	kick    chan struct{}
	closed  chan struct{} // closed by stop
	done    chan struct{} // closed when the writer ended
	once    sync.Once
}

// maxPending is how many bytes Write buffers before it waits for the
// writer goroutine: a peer that stops reading holds back the writer.
const maxPending = 256 << 10

// closeFlush bounds the last write at Close.
const closeFlush = time.Second

// NewCoalesced wraps c with a read buffer of readSize bytes and starts its
// writer goroutine, which Close stops.
func NewCoalesced(c net.Conn, readSize int) *Coalesced {
	cc := &Coalesced{
		Conn:   c,
		r:      bufio.NewReaderSize(c, readSize),
		kick:   make(chan struct{}, 1),
		closed: make(chan struct{}),
		done:   make(chan struct{}),
	}
	cc.cond.L = &cc.mu
	go cc.writer()
	return cc
}

// Unwrap returns the wrapped connection.
func (c *Coalesced) Unwrap() net.Conn { return c.Conn }

// Read reads through the buffer.
func (c *Coalesced) Read(p []byte) (int, error) { return c.r.Read(p) }

// ErrClosed is returned by writes after Close.
var ErrClosed = errors.New("bufconn: connection closed")

// Write queues p for the writer goroutine and returns at once, unless
// maxPending bytes are already waiting. The error of a failed write is
// returned by the writes after it.
func (c *Coalesced) Write(p []byte) (int, error) {
	c.mu.Lock()
	for c.err == nil && !c.closing && len(c.buf) >= maxPending {
		c.cond.Wait()
	}
	switch {
	case c.err != nil:
		err := c.err
		c.mu.Unlock()
		return 0, err
	case c.closing:
		c.mu.Unlock()
		return 0, ErrClosed
	}
	c.buf = append(c.buf, p...)
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *Coalesced) writer() {
	defer close(c.done)
	for {
		closing := false
		select {
		case <-c.kick:
			// Let the goroutine that kicked add what it has ready too.
			runtime.Gosched()
		case <-c.closed:
			closing = true
		}
		c.mu.Lock()
		b := c.buf
		c.buf = c.spare[:0]
		failed := c.err != nil
		c.cond.Broadcast()
		c.mu.Unlock()
		if len(b) > 0 && !failed {
			if closing {
				_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlush))
			}
			if _, err := c.Conn.Write(b); err != nil {
				c.mu.Lock()
				c.err = err
				c.cond.Broadcast()
				c.mu.Unlock()
			}
		}
		c.mu.Lock()
		c.spare = b[:0]
		if cap(c.spare) > maxPending {
			c.spare = nil
		}
		c.mu.Unlock()
		if closing {
			return
		}
	}
}

// stop refuses further writes, has the writer send what is buffered and
// waits for it to end.
func (c *Coalesced) stop() {
	c.once.Do(func() {
		c.mu.Lock()
		c.closing = true
		c.cond.Broadcast()
		c.mu.Unlock()
		close(c.closed)
	})
	<-c.done
}

// Close sends what is buffered (for up to a second) and closes the
// wrapped connection.
func (c *Coalesced) Close() error {
	c.stop()
	return c.Conn.Close()
}

// CloseWrite sends what is buffered and half-closes the wrapped
// connection, when it can be half-closed.
func (c *Coalesced) CloseWrite() error {
	c.stop()
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
