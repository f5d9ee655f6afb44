package udpbatch

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

func listen(t *testing.T, network, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Skipf("no %s socket on %s: %v", network, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func dial(t *testing.T, to net.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, to.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// readAll reads until want datagrams arrived or 5s passed.
func readAll(t *testing.T, r *Reader, c *net.UDPConn, want int, each func(m *Message)) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	for got := 0; got < want; {
		ms, err := r.Read()
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", got, want, err)
		}
		for i := range ms {
			each(&ms[i])
		}
		got += len(ms)
	}
}

// TestManyClientsAddressPerDatagram: datagrams from many sockets arrive
// with the source address of each, batched when the kernel has several
// ready, and the answers sent through a Writer reach each client.
func TestManyClientsAddressPerDatagram(t *testing.T) {
	for _, tc := range []struct{ name, network, addr string }{
		{"ipv4", "udp4", "127.0.0.1:0"},
		{"ipv6", "udp6", "[::1]:0"},
		{"dual-stack-v4-client", "udp", "[::]:0"},
	} {
		for _, batch := range []int{1, 16} {
			t.Run(fmt.Sprintf("%s/batch=%d", tc.name, batch), func(t *testing.T) {
				srv := listen(t, tc.network, tc.addr)
				r, err := NewReader(srv, batch, 64)
				if err != nil {
					t.Fatal(err)
				}
				w, err := NewWriter(srv, batch)
				if err != nil {
					t.Fatal(err)
				}
				if batch > 1 && runtime.GOOS == "linux" && (!r.Batched() || !w.Batched()) {
					t.Fatal("not batched on Linux")
				}
				to := srv.LocalAddr().(*net.UDPAddr)
				if tc.name == "dual-stack-v4-client" {
					to = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: to.Port}
				}
				const clients, per = 40, 5
				conns := make([]*net.UDPConn, clients)
				byAddr := map[netip.AddrPort]int{}
				for i := range conns {
					conns[i] = dial(t, to)
					byAddr[conns[i].LocalAddr().(*net.UDPAddr).AddrPort()] = i
				}
				// All sent before the first read: the kernel queues them and
				// recvmmsg returns several per call.
				for k := range per {
					for i, c := range conns {
						if _, err := fmt.Fprintf(c, "c%d-%d", i, k); err != nil {
							t.Fatal(err)
						}
					}
				}
				seen := make([]int, clients)
				maxBatch := 0
				readAll(t, r, srv, clients*per, func(m *Message) {
					src := m.Addr
					if tc.name == "dual-stack-v4-client" {
						if !src.Addr().Is4In6() {
							t.Errorf("dual-stack source %v is not v4-mapped", src)
						}
						src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
					}
					i, ok := byAddr[src]
					if !ok {
						t.Fatalf("datagram %q from unknown address %v", m.Data(), m.Addr)
					}
					if want := fmt.Sprintf("c%d-%d", i, seen[i]); string(m.Data()) != want {
						t.Errorf("from client %d: got %q, want %q", i, m.Data(), want)
					}
					seen[i]++
					if err := w.Add(append([]byte("ack-"), m.Data()...), m.Addr); err != nil {
						t.Fatal(err)
					}
				})
				_ = maxBatch
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				buf := make([]byte, 64)
				for i, c := range conns {
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					for k := range per {
						n, err := c.Read(buf)
						if err != nil {
							t.Fatalf("client %d answer %d: %v", i, k, err)
						}
						if want := fmt.Sprintf("ack-c%d-%d", i, k); string(buf[:n]) != want {
							t.Errorf("client %d: got %q, want %q", i, buf[:n], want)
						}
					}
				}
			})
		}
	}
}

// TestBatchReadsSeveralPerCall: with datagrams queued, one Read returns
// more than one (the point of recvmmsg).
func TestBatchReadsSeveralPerCall(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("recvmmsg is Linux-only")
	}
	srv := listen(t, "udp4", "127.0.0.1:0")
	c := dial(t, srv.LocalAddr())
	for i := range 10 {
		if _, err := c.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := NewReader(srv, 8, 16)
	ms, err := r.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 8 {
		t.Fatalf("first Read returned %d datagrams, want 8 of the 10 queued", len(ms))
	}
	for i, m := range ms {
		if m.N != 1 || m.Buf[0] != byte(i) {
			t.Fatalf("slot %d: %v", i, m.Data())
		}
	}
	ms, err = r.Read()
	if err != nil || len(ms) != 2 {
		t.Fatalf("second Read: %d datagrams, %v", len(ms), err)
	}
}

// TestTruncation: a datagram larger than its slot is cut to the slot and
// flagged; the datagrams around it are intact.
func TestTruncation(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	c := dial(t, srv.LocalAddr())
	for _, d := range [][]byte{[]byte("short"), bytes.Repeat([]byte("x"), 100), []byte("after")} {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	r, _ := NewReader(srv, 4, 16)
	var got []Message
	readAll(t, r, srv, 3, func(m *Message) {
		got = append(got, Message{Buf: append([]byte(nil), m.Data()...), N: m.N, Truncated: m.Truncated})
	})
	if string(got[0].Buf) != "short" || got[0].Truncated {
		t.Errorf("first: %q truncated=%v", got[0].Buf, got[0].Truncated)
	}
	if got[1].N != 16 || (r.Batched() && !got[1].Truncated) {
		t.Errorf("long: %d bytes, truncated=%v; want 16, true", got[1].N, got[1].Truncated)
	}
	if string(got[2].Buf) != "after" || got[2].Truncated {
		t.Errorf("last: %q truncated=%v", got[2].Buf, got[2].Truncated)
	}
}

// TestFallback: one slot, and a batch whose kernel path is switched off
// (as on a kernel without recvmmsg/sendmmsg), read and write one datagram
// per call.
func TestFallback(t *testing.T) {
	for _, name := range []string{"one-slot", "disabled"} {
		t.Run(name, func(t *testing.T) {
			srv := listen(t, "udp4", "127.0.0.1:0")
			n := 1
			if name == "disabled" {
				n = 8
			}
			r, _ := NewReader(srv, n, 32)
			w, _ := NewWriter(srv, n)
			if name == "disabled" && r.sys != nil {
				r.sys.disabled, w.sys.disabled = true, true
			}
			if r.Batched() || w.Batched() {
				t.Fatal("still batched")
			}
			c := dial(t, srv.LocalAddr())
			for i := range 3 {
				if _, err := c.Write([]byte{'a' + byte(i)}); err != nil {
					t.Fatal(err)
				}
			}
			i := 0
			readAll(t, r, srv, 3, func(m *Message) {
				if m.N != 1 || m.Buf[0] != 'a'+byte(i) || m.Addr != c.LocalAddr().(*net.UDPAddr).AddrPort() {
					t.Errorf("datagram %d: %q from %v", i, m.Data(), m.Addr)
				}
				i++
				if err := w.Add(m.Data(), m.Addr); err != nil {
					t.Fatal(err)
				}
			})
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 8)
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			for i := range 3 {
				n, err := c.Read(buf)
				if err != nil || n != 1 || buf[0] != 'a'+byte(i) {
					t.Fatalf("answer %d: %q %v", i, buf[:n], err)
				}
			}
		})
	}
}

// TestWriterSkipsUnsendable: a destination the socket cannot reach (IPv6
// on an IPv4 socket) fails alone; the datagrams queued around it go out.
func TestWriterSkipsUnsendable(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	c := dial(t, srv.LocalAddr())
	w, _ := NewWriter(srv, 4)
	to := c.LocalAddr().(*net.UDPAddr).AddrPort()
	_ = w.Add([]byte("1"), to)
	_ = w.Add([]byte("bad"), netip.MustParseAddrPort("[2001:db8::1]:5683"))
	_ = w.Add([]byte("2"), to)
	if err := w.Flush(); err == nil {
		t.Error("Flush reported no error for an IPv6 destination on an IPv4 socket")
	}
	buf := make([]byte, 8)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"1", "2"} {
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("got %q %v, want %q", buf[:n], err, want)
		}
	}
}

// TestNoAllocationPerDatagram: the batched read and write paths do not
// allocate.
func TestNoAllocationPerDatagram(t *testing.T) {
	srv := listen(t, "udp4", "127.0.0.1:0")
	c := dial(t, srv.LocalAddr())
	r, _ := NewReader(srv, 8, 64)
	w, _ := NewWriter(srv, 8)
	msg := []byte("ping")
	allocs := testing.AllocsPerRun(200, func() {
		for range 4 {
			_, _ = c.Write(msg)
		}
		for got := 0; got < 4; {
			ms, err := r.Read()
			if err != nil {
				t.Fatal(err)
			}
			for i := range ms {
				_ = w.Add(ms[i].Data(), ms[i].Addr)
			}
			got += len(ms)
		}
		_ = w.Flush()
	})
	// The client's own Write does not allocate either; drain its answers.
	_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	buf := make([]byte, 64)
	for {
		if _, err := c.Read(buf); err != nil {
			break
		}
	}
	if allocs != 0 {
		t.Fatalf("%.1f allocations per 4 datagrams read and answered", allocs)
	}
}
