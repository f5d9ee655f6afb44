package observe

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// httptestServer serves h on loopback until the test ends and returns its
// /metrics URL.
func httptestServer(t testing.TB, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

// net0 finds a free loopback port.
type net0 struct{}

func (net0) listen() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
