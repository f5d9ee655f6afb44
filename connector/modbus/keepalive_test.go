package modbus

import (
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/tcpkeepalive/katest"
	"github.com/iotgw/gateway/internal/testenv"
)

// TestTCPKeepAlive30s reads the keepalive options back from the live
// connection to a simonvetter server, by name ("localhost") and by
// address: 30 s idle, 30 s between probes, where the client library alone
// gives Go's 15 s.
func TestTCPKeepAlive30s(t *testing.T) {
	if runtime.GOOS != "linux" {
		testenv.Skip(t, "the keepalive of the library's socket is set on Linux only")
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			port := testenv.FreePort(t)
			srv := startEdgeServer(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), &edgeServer{})
			t.Cleanup(func() { _ = srv.Stop() })
			c, err := New(WithLogger(quietLogger()), WithDevice(Device{Name: "plc", Address: net.JoinHostPort(host, strconv.Itoa(port)),
				Interval: 20 * time.Millisecond, Ranges: []Range{{HoldingRegisters, 0, 1}}}))
			if err != nil {
				t.Fatal(err)
			}
			col := conntest.NewCollector()
			connect(t, c, col)
			waitLatest(t, col, "a frame", func(m map[string]gateway.Frame) bool { return len(m) > 0 })
			server := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
			katest.Require(t, "client socket to "+server.String(), 1, func(_, peer netip.AddrPort) bool { return peer == server })
		})
	}
}
