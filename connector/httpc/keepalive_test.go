package httpc

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/tcpkeepalive"
	"github.com/iotgw/gateway/internal/tcpkeepalive/katest"
)

// TestTCPKeepAlive30s: a device's connection to the listener and the
// poller's connection to a device.
func TestTCPKeepAlive30s(t *testing.T) {
	dev := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("1")) }))
	defer dev.Close()
	col := conntest.NewCollector()
	c, _ := start(t, col, WithPoll(Poll{Device: "meter", URL: dev.URL + "/state", Topic: "state", Interval: 20 * time.Millisecond}))
	conntest.Eventually(t, 10*time.Second, "first poll", func() bool { return col.Len() > 0 })
	devAddr := dev.Listener.Addr().(*net.TCPAddr).AddrPort()
	katest.Require(t, "poller connection", 0, func(_, peer netip.AddrPort) bool { return peer == devAddr })

	conn, err := net.Dial("tcp", c.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ln, me := c.Addr().(*net.TCPAddr).AddrPort(), conn.LocalAddr().(*net.TCPAddr).AddrPort()
	conntest.Eventually(t, 5*time.Second, "accepted", func() bool {
		ss, _ := tcpkeepalive.Sockets(func(local, peer netip.AddrPort) bool { return local == ln && peer == me })
		return len(ss) == 1
	})
	katest.Require(t, "listener connection", 1, func(local, peer netip.AddrPort) bool { return local == ln && peer == me })
}
