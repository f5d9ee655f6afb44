package httpc

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/tcpkeepalive"
	"github.com/iotgw/gateway/internal/testenv"
)

// wantKeepAlive30s reads back the keepalive of this process's sockets that
// match selects (at least one): on, 30 s idle, 30 s between probes.
func wantKeepAlive30s(t *testing.T, what string, match func(local, peer netip.AddrPort) bool) {
	t.Helper()
	if runtime.GOOS != "linux" {
		testenv.Skip(t, "reads socket options through /proc/self/fd (Linux)")
	}
	ss, err := tcpkeepalive.Sockets(match)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) == 0 {
		t.Fatalf("%s: no socket", what)
	}
	for _, s := range ss {
		if !s.Enabled || s.Idle != 30*time.Second || s.Interval != 30*time.Second || s.Count != 9 {
			t.Fatalf("%s: keepalive %+v, want on, 30 s idle, 30 s interval, 9 probes", what, s)
		}
	}
}

// TestTCPKeepAlive30s: a device's connection to the listener and the
// poller's connection to a device.
func TestTCPKeepAlive30s(t *testing.T) {
	dev := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("1")) }))
	defer dev.Close()
	col := conntest.NewCollector()
	c, _ := start(t, col, WithPoll(Poll{Device: "meter", URL: dev.URL + "/state", Topic: "state", Interval: 20 * time.Millisecond}))
	conntest.Eventually(t, 10*time.Second, "first poll", func() bool { return col.Len() > 0 })
	devAddr := dev.Listener.Addr().(*net.TCPAddr).AddrPort()
	wantKeepAlive30s(t, "poller connection", func(_, peer netip.AddrPort) bool { return peer == devAddr })

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
	wantKeepAlive30s(t, "listener connection", func(local, peer netip.AddrPort) bool { return local == ln && peer == me })
}
