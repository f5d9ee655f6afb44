package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// openConnection dials the broker for paho. It exists to wrap the TCP
// connection (see quickAck) below TLS.
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
	conn = quickAck(conn)
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
