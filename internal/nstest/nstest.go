// Package nstest builds throw-away network namespaces joined by a veth pair
// for tests that need real kernel networking. Everything is removed in
// t.Cleanup, also when the test fails.
package nstest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Side is one end of a Pair: a namespace and its veth.
type Side struct {
	NS   netns.NsHandle
	Link string
	IPv4 netip.Addr
	IPv6 netip.Addr
	MAC  net.HardwareAddr
}

// Pair is two namespaces A and B joined by a veth pair with IPv4
// 10.99.0.1/24 <-> 10.99.0.2/24 and IPv6 fd99::1/64 <-> fd99::2/64,
// static neighbour entries (no ARP or ND on the wire), and IPv6 duplicate
// address detection and router solicitation off, so the only traffic on the
// link is what the test sends (plus a few MLD reports right after setup,
// finished before New returns).
type Pair struct {
	A, B Side
}

// Do runs fn on a locked OS thread inside ns. Sockets and netlink handles
// created by fn stay in ns and may be used from any goroutine afterwards.
func Do(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("nstest: current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("nstest: enter netns: %w", err)
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// Leave the thread locked: the runtime discards it with the goroutine.
		return fmt.Errorf("nstest: return to netns: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// MustDo is Do that fails t on error.
func MustDo(t testing.TB, ns netns.NsHandle, fn func() error) {
	t.Helper()
	if err := Do(ns, fn); err != nil {
		t.Fatal(err)
	}
}

// sysctl writes a /proc/sys/net value of the current thread's namespace.
func sysctl(path, v string) error {
	return os.WriteFile("/proc/sys/net/"+path, []byte(v), 0o644)
}

// NewPair creates the namespaces and the veth pair "veth-a" (in A) and
// "veth-b" (in B), up, addressed and with static neighbours.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	p := &Pair{
		A: Side{Link: "veth-a", IPv4: netip.MustParseAddr("10.99.0.1"), IPv6: netip.MustParseAddr("fd99::1"),
			MAC: net.HardwareAddr{0x02, 0, 0, 0x99, 0, 1}},
		B: Side{Link: "veth-b", IPv4: netip.MustParseAddr("10.99.0.2"), IPv6: netip.MustParseAddr("fd99::2"),
			MAC: net.HardwareAddr{0x02, 0, 0, 0x99, 0, 2}},
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("nstest: current netns: %v", err)
	}
	a, errA := netns.New()
	b, errB := netns.New()
	if err := netns.Set(orig); err != nil {
		t.Fatalf("nstest: return to netns: %v", err) // thread stays locked and dies
	}
	runtime.UnlockOSThread()
	orig.Close()
	if errA != nil || errB != nil {
		t.Fatalf("nstest: new netns: %v %v", errA, errB)
	}
	p.A.NS, p.B.NS = a, b
	t.Cleanup(func() {
		// Namespaces vanish with their last reference; the veth goes with them.
		a.Close()
		b.Close()
	})
	for _, ns := range []netns.NsHandle{a, b} {
		MustDo(t, ns, func() error {
			for _, kv := range [][2]string{{"ipv6/conf/default/accept_dad", "0"}, {"ipv6/conf/default/router_solicitations", "0"},
				{"ipv6/conf/default/mldv2_unsolicited_report_interval", "1"}, {"ipv6/conf/default/mldv1_unsolicited_report_interval", "1"}} {
				if err := sysctl(kv[0], kv[1]); err != nil {
					return err
				}
			}
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			return netlink.LinkSetUp(lo)
		})
	}
	MustDo(t, a, func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: p.A.Link, HardwareAddr: p.A.MAC, TxQLen: 1000},
			PeerName: p.B.Link, PeerHardwareAddr: p.B.MAC, PeerNamespace: netlink.NsFd(int(b))}
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		return nil
	})
	configure := func(me, peer Side) func() error {
		return func() error {
			l, err := netlink.LinkByName(me.Link)
			if err != nil {
				return err
			}
			for _, a := range []string{me.IPv4.String() + "/24", me.IPv6.String() + "/64"} {
				addr, err := netlink.ParseAddr(a)
				if err != nil {
					return err
				}
				addr.Flags = unix.IFA_F_NODAD
				if err := netlink.AddrAdd(l, addr); err != nil {
					return fmt.Errorf("add %s: %w", a, err)
				}
			}
			for _, ip := range []netip.Addr{peer.IPv4, peer.IPv6} {
				fam := netlink.FAMILY_V4
				if ip.Is6() {
					fam = netlink.FAMILY_V6
				}
				n := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT,
					IP: net.IP(ip.AsSlice()), HardwareAddr: peer.MAC}
				if err := netlink.NeighAdd(n); err != nil {
					return fmt.Errorf("neighbour %s: %w", ip, err)
				}
			}
			return netlink.LinkSetUp(l)
		}
	}
	MustDo(t, a, configure(p.A, p.B))
	MustDo(t, b, configure(p.B, p.A))
	return p
}
