// Package katest is the test helper of package tcpkeepalive: it reads back
// the keepalive of a test process's sockets. It lives apart so programs
// that import tcpkeepalive do not link the testing package.
package katest

import (
	"net/netip"
	"runtime"
	"testing"

	"github.com/iotgw/gateway/internal/tcpkeepalive"
	"github.com/iotgw/gateway/internal/testenv"
)

// Require reads back the keepalive of this process's sockets that match
// selects and fails tb unless there are want of them (at least one when
// want is 0) and every one is Standard. It needs Linux: elsewhere it
// skips (and fails when CI=true).
func Require(tb testing.TB, what string, want int, match func(local, peer netip.AddrPort) bool) {
	tb.Helper()
	if runtime.GOOS != "linux" {
		testenv.Skip(tb, "reads socket options through /proc/self/fd (Linux)")
	}
	ss, err := tcpkeepalive.Sockets(match)
	if err != nil {
		tb.Fatal(err)
	}
	if len(ss) == 0 || (want > 0 && len(ss) != want) {
		tb.Fatalf("%s: %d sockets, want %d: %+v", what, len(ss), max(want, 1), ss)
	}
	for _, s := range ss {
		if !s.Standard() {
			tb.Fatalf("%s: keepalive %+v, want on, %v idle, %v between probes, %d probes", what, s, tcpkeepalive.Period, tcpkeepalive.Period, tcpkeepalive.Count)
		}
	}
}
