package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotgw/gateway/internal/bufconn"
)

// openConnection dials the broker for paho. It exists to wrap the TCP
// connection below TLS: quickAck, and a bufconn.Coalesced that reads
// through a buffer and sends the PUBLISHes paho writes one at a time
// together (everything written while the previous write was in the
// kernel goes out in the next one).
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
	conn = bufconn.NewCoalesced(quickAck(conn), readBufferSize)
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

// readBufferSize holds about 1,000 PUBACKs (4 bytes each). paho reads
// every packet header a byte at a time: three read system calls per
// PUBACK without the buffer, one per buffer-full with it.
const readBufferSize = 4 << 10
