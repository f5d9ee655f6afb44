package bufconn

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// recConn records the calls made on it; writes can be held at a gate.
type recConn struct {
	net.Conn // nil: methods not overridden panic
	mu       sync.Mutex
	writes   [][]byte
	reads    int
	in       *bytes.Reader
	gate     chan struct{}
	entered  chan struct{}
	halfShut bool
	closed   bool
}

func (c *recConn) Write(p []byte) (int, error) {
	if c.entered != nil {
		select {
		case c.entered <- struct{}{}:
		default:
		}
	}
	if c.gate != nil {
		<-c.gate
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func (c *recConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads++
	return c.in.Read(p)
}

func (c *recConn) SetWriteDeadline(time.Time) error { return nil }
func (c *recConn) CloseWrite() error                { c.halfShut = true; return nil }
func (c *recConn) Close() error                     { c.closed = true; return nil }

func (c *recConn) all() ([]byte, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Join(c.writes, nil), len(c.writes)
}

// TestHeldBatch: writes inside Hold/Release go out in one write, in
// order; outside a batch each goes straight through.
func TestHeldBatch(t *testing.T) {
	rc := &recConn{}
	h := NewHeld(rc)
	h.Hold()
	for _, s := range []string{"a", "bb", "ccc"} {
		if n, err := h.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("write %q: %d, %v", s, n, err)
		}
	}
	if _, n := rc.all(); n != 0 {
		t.Fatalf("%d writes while held", n)
	}
	if err := h.Release(); err != nil {
		t.Fatal(err)
	}
	if got, n := rc.all(); n != 1 || string(got) != "abbccc" {
		t.Fatalf("after Release: %d writes of %q, want 1 of \"abbccc\"", n, got)
	}
	_, _ = h.Write([]byte("d"))
	if got, n := rc.all(); n != 2 || string(got) != "abbcccd" {
		t.Fatalf("unheld write: %d writes of %q", n, got)
	}
	h.Hold()
	_, _ = h.Write([]byte("e"))
	if err := h.CloseWrite(); err != nil || !rc.halfShut {
		t.Fatalf("CloseWrite: %v, passed on %v", err, rc.halfShut)
	}
	if got, _ := rc.all(); string(got) != "abbcccde" {
		t.Fatalf("CloseWrite did not flush first: %q", got)
	}
	h.Hold()
	_, _ = h.Write([]byte("f"))
	if err := h.Close(); err != nil || !rc.closed {
		t.Fatalf("Close: %v, passed on %v", err, rc.closed)
	}
	if got, _ := rc.all(); string(got) != "abbcccdef" {
		t.Fatalf("Close did not flush first: %q", got)
	}
	if _, err := h.Write([]byte("g")); err == nil {
		t.Fatal("write after Close succeeded")
	}
	if Unwrap(h) != net.Conn(rc) {
		t.Fatal("Unwrap does not reach the wrapped connection")
	}
	var tc net.Conn = tls.Client(rc, &tls.Config{})
	if _, ok := Unwrap(NewHeld(tc)).(*tls.Conn); !ok {
		t.Fatal("Unwrap does not reach a wrapped *tls.Conn")
	}
}

// TestCoalescedWrites: writes made while the writer goroutine is in a
// write go out together in the next one, all in order, and Close sends
// the rest.
func TestCoalescedWrites(t *testing.T) {
	rc := &recConn{in: bytes.NewReader(nil), gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	c := NewCoalesced(rc, 4096)
	var want []byte
	write := func(s string) {
		want = append(want, s...)
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("write %q: %d, %v", s, n, err)
		}
	}
	write("first")
	<-rc.entered // the writer is in the wrapped Write, held at the gate
	for range 100 {
		write("x")
	}
	close(rc.gate)
	write("last")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got, n := rc.all()
	if !bytes.Equal(got, want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
	if n > 3 {
		t.Fatalf("%d writes for 102 written while one was in the kernel; want at most 3", n)
	}
	if !rc.closed {
		t.Fatal("Close not passed on")
	}
	if _, err := c.Write([]byte("late")); err == nil {
		t.Fatal("write after Close succeeded")
	}
}

// TestCoalescedReads: packets read a byte at a time cost one read of the
// wrapped connection per buffer.
func TestCoalescedReads(t *testing.T) {
	data := bytes.Repeat([]byte{0x40, 0x02, 0x00, 0x01}, 500)
	rc := &recConn{in: bytes.NewReader(data)}
	c := NewCoalesced(rc, 4096)
	defer c.Close()
	var got []byte
	one := make([]byte, 1)
	for {
		n, err := c.Read(one)
		got = append(got, one[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatal("read data differs")
	}
	if rc.reads > 3 {
		t.Fatalf("%d reads of the connection for 2000 bytes read a byte at a time", rc.reads)
	}
}
