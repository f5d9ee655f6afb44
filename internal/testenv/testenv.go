// Package testenv lets tests that need root, a kernel feature or an
// external peer skip with a reason on a developer machine, while the same
// skip fails the test in CI (CI=true), where everything must be present.
package testenv

import (
	"net"
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true or CI=1).
func InCI() bool {
	v := os.Getenv("CI")
	return v == "true" || v == "1"
}

// Skip skips t with reason on a developer machine and fails it in CI.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("required in CI but missing: %s", reason)
	}
	t.Skip("skipped: " + reason)
}

// RequireRoot needs euid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root")
	}
}

// RequireCommand needs each named program on PATH and returns the path of
// the first.
func RequireCommand(t testing.TB, names ...string) string {
	t.Helper()
	first := ""
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			Skip(t, "needs "+n+" on PATH (see scripts/test.sh for the package)")
			return ""
		}
		if first == "" {
			first = p
		}
	}
	return first
}

// Require skips (or fails in CI) with reason unless ok.
func Require(t testing.TB, ok bool, reason string) {
	t.Helper()
	if !ok {
		Skip(t, reason)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free udp port: %v", err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
