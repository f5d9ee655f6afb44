package mqtt

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/tcpkeepalive/katest"
	"github.com/iotgw/gateway/internal/testenv"
)

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
	katest.Require(t, "listener session", 1, func(local, _ netip.AddrPort) bool { return local == ln })
}

// TestClientTCPKeepAlive30s: the client's connection to mosquitto.
func TestClientTCPKeepAlive30s(t *testing.T) {
	b := startBroker(t)
	startClient(t, conntest.NewCollector(), WithBroker("tcp://"+b.addr()), WithTopics(0, "sensors/{device}/#"))
	broker := netip.MustParseAddrPort(b.addr())
	katest.Require(t, "client connection", 1, func(_, peer netip.AddrPort) bool { return peer == broker })
}
