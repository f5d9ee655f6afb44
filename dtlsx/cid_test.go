package dtlsx

import (
	"net"
	"sync"
	"testing"
	"time"
)

// rebindingConn is a client socket whose source port changes on demand,
// as a NAT rebinding would do.
type rebindingConn struct {
	mu  sync.Mutex
	cur *net.UDPConn
	old []*net.UDPConn
}

func (r *rebindingConn) conn() *net.UDPConn { r.mu.Lock(); defer r.mu.Unlock(); return r.cur }

func (r *rebindingConn) rebind(t *testing.T) {
	n, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.old = append(r.old, r.cur)
	r.cur = n
	r.mu.Unlock()
	// Wake a reader blocked on the old socket.
	_ = r.old[len(r.old)-1].SetReadDeadline(time.Now())
}

func (r *rebindingConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c := r.conn()
		n, a, err := c.ReadFrom(b)
		if err != nil && c != r.conn() {
			continue // rebound while reading
		}
		return n, a, err
	}
}
func (r *rebindingConn) WriteTo(b []byte, a net.Addr) (int, error) { return r.conn().WriteTo(b, a) }
func (r *rebindingConn) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.old {
		_ = c.Close()
	}
	return r.cur.Close()
}
func (r *rebindingConn) LocalAddr() net.Addr                { return r.conn().LocalAddr() }
func (r *rebindingConn) SetDeadline(t time.Time) error      { return r.conn().SetDeadline(t) }
func (r *rebindingConn) SetReadDeadline(t time.Time) error  { return r.conn().SetReadDeadline(t) }
func (r *rebindingConn) SetWriteDeadline(t time.Time) error { return r.conn().SetWriteDeadline(t) }

// TestConnectionIDSurvivesRebinding: with RFC 9146 connection ids the
// session keeps working after the device's source port changes.
func TestConnectionIDSurvivesRebinding(t *testing.T) {
	pki := newPKI(t)
	l := listen(t, WithCertificate(pki.server))
	serveEcho(t, l)
	first, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	rc := &rebindingConn{cur: first}
	c, err := Client(ctxT(t, 5*time.Second), rc, l.Addr(), WithRootCAs(pki.pool), WithServerName("gw.test"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOnce(t, c, "before rebinding")
	rc.rebind(t)
	// pion hands a record to Read before it moves the peer address to the
	// record's source, so the echo of the very first record after the
	// rebinding can go to the old port and be lost, as a UDP datagram may
	// be. The session must work from then on.
	var echoed bool
	buf := make([]byte, 100)
	for try := 0; try < 3 && !echoed; try++ {
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("after rebinding")); err != nil {
			t.Fatal(err)
		}
		n, err := c.Read(buf)
		echoed = err == nil && string(buf[:n]) == "after rebinding"
	}
	if !echoed {
		t.Fatalf("no echo after rebinding; stats %+v", l.Stats())
	}
	_ = c.SetDeadline(time.Time{})
	echoOnce(t, c, "and later")
	if st := l.Stats(); st.Unknown != 0 || st.HandshakesFull != 1 || st.Associations != 1 {
		t.Fatalf("stats = %+v, want one association and nothing unroutable", st)
	}
}
