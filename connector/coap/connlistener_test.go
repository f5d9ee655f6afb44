package coap

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp"
)

// peerConn is one peer's datagram session over a shared UDP socket, the
// shape a DTLS listener hands out.
type peerConn struct {
	*net.UDPConn
	peer *net.UDPAddr
}

func (p peerConn) Read(b []byte) (int, error) {
	for {
		n, from, err := p.ReadFromUDP(b)
		if err != nil || from.String() == p.peer.String() {
			return n, err
		}
	}
}

func (p peerConn) Write(b []byte) (int, error) { return p.WriteToUDP(b, p.peer) }
func (p peerConn) RemoteAddr() net.Addr        { return p.peer }

// oneConnListener accepts a single conn, then waits until closed.
type oneConnListener struct {
	conn   net.Conn
	once   sync.Once
	closed chan struct{}
	mu     sync.Mutex
	given  bool
}

func (l *oneConnListener) AcceptWithContext(ctx context.Context) (net.Conn, error) {
	l.mu.Lock()
	given := l.given
	l.given = true
	l.mu.Unlock()
	if !given {
		return l.conn, nil
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// TestConnListener serves CoAP over conns from an injected listener, the
// seam a DTLS layer uses.
func TestConnListener(t *testing.T) {
	srvSock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srvSock.Close()
	cliSock, err := net.DialUDP("udp", nil, srvSock.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	ln := &oneConnListener{conn: peerConn{srvSock, cliSock.LocalAddr().(*net.UDPAddr)}, closed: make(chan struct{})}
	col := conntest.NewCollector()
	start(t, col, WithConnListener(ln))

	cc := udp.Client(cliSock)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cc.Post(ctx, "/devices/secure-1/env", message.TextPlain, bytes.NewReader([]byte("22.0")))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code() != codes.Changed {
		t.Fatalf("answer %v", resp.Code())
	}
	fs := col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) == 1 })
	if fs[0].Device != "secure-1" || fs[0].Topic != "env" || string(fs[0].Payload) != "22.0" {
		t.Fatalf("frame %+v", fs[0])
	}
}
