package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// openConnection dials the broker for paho. It exists to wrap the TCP
// connection below TLS: quickAck, and bufferedReads.
func (s *Sink) openConnection(uri *url.URL, _ paho.ClientOptions) (net.Conn, error) {
	host := uri.Host
	secure := s.tls != nil
	if uri.Port() == "" {
		port := "1883"
		if secure {
			port = "8883"
		}
		host = net.JoinHostPort(uri.Hostname(), port)
	}
	d := net.Dialer{Timeout: s.cfg.ConnectTimeout, KeepAlive: s.cfg.KeepAlive}
	conn, err := d.Dial("tcp", host)
	if err != nil {
		return nil, err
	}
	conn = bufferedReads(quickAck(conn))
	if !secure {
		return conn, nil
	}
	tc := tls.Client(conn, s.tls.Clone())
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("tls handshake with %s: %w", host, err)
	}
	return tc, nil
}

// bufferedReads puts a read buffer under paho, which reads every packet
// header a byte at a time straight from the connection: three read
// system calls (and three TCP_QUICKACK setsockopts) per PUBACK without
// it, one per buffer-full of PUBACKs with it.
func bufferedReads(c net.Conn) net.Conn {
	return &readBufferedConn{Conn: c, r: bufio.NewReaderSize(c, readBufferSize)}
}

// readBufferSize holds about 1,000 PUBACKs (4 bytes each).
const readBufferSize = 4 << 10

type readBufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *readBufferedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
