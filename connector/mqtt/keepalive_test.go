package mqtt

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/tcpkeepalive"
	"github.com/iotgw/gateway/internal/testenv"
)

// wantKeepAlive30s reads back the keepalive of the one socket of this
// process that match selects: on, 30 s idle, 30 s between probes.
func wantKeepAlive30s(t *testing.T, what string, match func(local, peer netip.AddrPort) bool) {
	t.Helper()
	if runtime.GOOS != "linux" {
		testenv.Skip(t, "reads socket options through /proc/self/fd (Linux)")
	}
	ss, err := tcpkeepalive.Sockets(match)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 1 {
		t.Fatalf("%s: %d sockets, want 1: %+v", what, len(ss), ss)
	}
	if s := ss[0]; !s.Enabled || s.Idle != 30*time.Second || s.Interval != 30*time.Second || s.Count != 9 {
		t.Fatalf("%s: keepalive %+v, want on, 30 s idle, 30 s interval, 9 probes", what, s)
	}
}

// TestListenerTCPKeepAlive30s: the session socket of a mosquitto_sub
// device connected to the listener.
func TestListenerTCPKeepAlive30s(t *testing.T) {
	l, h, p := startListener(t, conntest.NewCollector(), devices...)
	bin := testenv.RequireCommand(t, "mosquitto_sub")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, bin, "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-t", "devices/dev1/cmd/#", "-C", "1")
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = sub.Wait() }()
	conntest.Eventually(t, 10*time.Second, "session up", func() bool { return l.Sessions() == 1 })
	ln := l.Addr().(*net.TCPAddr).AddrPort()
	wantKeepAlive30s(t, "listener session", func(local, _ netip.AddrPort) bool { return local == ln })
}

// TestClientTCPKeepAlive30s: the client's connection to mosquitto.
func TestClientTCPKeepAlive30s(t *testing.T) {
	b := startBroker(t)
	startClient(t, conntest.NewCollector(), WithBroker("tcp://"+b.addr()), WithTopics(0, "sensors/{device}/#"))
	broker := netip.MustParseAddrPort(b.addr())
	wantKeepAlive30s(t, "client connection", func(_, peer netip.AddrPort) bool { return peer == broker })
}
