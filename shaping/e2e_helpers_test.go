package shaping

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sort"
	"sync"
	"testing"
	"time"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/iotgw/gateway/internal/impair"
	"github.com/iotgw/gateway/internal/nstest"
	"github.com/iotgw/gateway/internal/testenv"
)

const (
	l2v4 = 14 + 20 + 8 // Ethernet + IPv4 + UDP header bytes
	l2v6 = 14 + 40 + 8
)

func newPair(t *testing.T) *nstest.Pair {
	t.Helper()
	testenv.RequireRoot(t)
	p := nstest.NewPair(t)
	// Let the MLD reports that follow address setup pass before counting.
	time.Sleep(100 * time.Millisecond)
	return p
}

func listen(t *testing.T, ns netns.NsHandle, addr netip.AddrPort) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	nstest.MustDo(t, ns, func() (err error) {
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func shaperIn(t *testing.T, ns netns.NsHandle, cfg Config) *Shaper {
	t.Helper()
	var s *Shaper
	nstest.MustDo(t, ns, func() (err error) {
		s, err = New(cfg)
		return err
	})
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close shaper: %v", err)
		}
	})
	return s
}

// quiet waits (at most 5 s) until the shapers have counted nothing for
// 300 ms, so link-setup chatter (IPv6 MLD reports) is not mistaken for test
// traffic.
func quiet(t *testing.T, shapers ...*Shaper) {
	t.Helper()
	total := func() uint64 {
		var n uint64
		for _, s := range shapers {
			st, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range st.Classes {
				n += c.Egress.Packets + c.Ingress.Packets
			}
			n += st.Other[Egress].Packets + st.Other[Ingress].Packets
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Second)
	last, since := total(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if n := total(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= 300*time.Millisecond {
			return
		}
	}
	t.Fatal("the link did not fall quiet within 5 s")
}

type arrival struct {
	at   time.Time
	size int
}

// receiver records datagrams: payload[0] is the DSCP the sender meant,
// payload[1:9] a sequence number.
type receiver struct {
	mu        sync.Mutex
	byDSCP    map[uint8]int // by DSCP seen on arrival
	mismatch  int           // arrivals whose DSCP differs from what was sent
	inversion int           // sequence numbers lower than one seen before
	lastSeq   map[uint8]uint64
	arrivals  []arrival
}

func startReceiver(t *testing.T, c *net.UDPConn) *receiver {
	t.Helper()
	if err := impair.EnableDSCP(c); err != nil {
		t.Fatal(err)
	}
	// Kernel receive times and a deep receive buffer keep the record
	// true while this process waits for a CPU on a busy machine.
	if err := impair.EnableTimestamps(c); err != nil {
		t.Fatal(err)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20)
	}); err != nil {
		t.Fatal(err)
	}
	r := &receiver{byDSCP: map[uint8]int{}, lastSeq: map[uint8]uint64{}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			d, err := impair.ReadDatagram(c, buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			n, dscp, now := d.N, d.DSCP, d.Kernel
			if now.IsZero() {
				now = time.Now()
			}
			r.mu.Lock()
			r.byDSCP[dscp]++
			r.arrivals = append(r.arrivals, arrival{now, n})
			if n >= 9 {
				if buf[0] != dscp {
					r.mismatch++
				}
				seq := binary.BigEndian.Uint64(buf[1:9])
				if seq < r.lastSeq[buf[0]] {
					r.inversion++
				}
				r.lastSeq[buf[0]] = max(seq, r.lastSeq[buf[0]])
			}
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		c.Close()
		wg.Wait()
	})
	return r
}

func (r *receiver) count(dscp uint8) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byDSCP[dscp]
}

func (r *receiver) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.arrivals)
}

// rate is the L2 bit rate of arrivals within [from, to).
func (r *receiver) rate(from, to time.Time, overhead int) float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var bytes int
	for _, a := range r.arrivals {
		if !a.at.Before(from) && a.at.Before(to) {
			bytes += a.size + overhead
		}
	}
	return float64(bytes*8) / to.Sub(from).Seconds()
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return cond()
}

func payload(b []byte, dscp uint8, seq uint64) []byte {
	b[0] = dscp
	binary.BigEndian.PutUint64(b[1:9], seq)
	return b
}

// send writes n datagrams of size bytes with dscp, pausing briefly after
// every 16 so the socket buffer never overflows.
func send(t *testing.T, c *net.UDPConn, dst netip.AddrPort, dscp uint8, n, size int) {
	t.Helper()
	b := make([]byte, size)
	for i := range n {
		if err := impair.WriteDSCP(c, payload(b, dscp, uint64(i+1)), dscp, dst); err != nil {
			t.Fatalf("send: %v", err)
		}
		if i%16 == 15 {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// blast sends size-byte datagrams with dscp at bps (counting overhead
// bytes of headers per datagram) until ctx ends; it returns how many.
func blast(ctx context.Context, c *net.UDPConn, dst netip.AddrPort, dscp uint8, size, overhead int, bps float64) int {
	b := make([]byte, size)
	pps := bps / float64((size+overhead)*8)
	start := time.Now()
	sent := 0
	for ctx.Err() == nil {
		target := int(time.Since(start).Seconds() * pps)
		for sent < target && ctx.Err() == nil {
			sent++
			_ = impair.WriteDSCP(c, payload(b, dscp, uint64(sent)), dscp, dst)
		}
		time.Sleep(time.Millisecond)
	}
	return sent
}

// deepQueue lets the sending side of p buffer seconds of traffic: a long
// device queue (HTB leaves inherit it) and a large socket send buffer on c.
// Traffic then leaves at the rate the kernel's qdisc sets, even while the
// test process is descheduled on a busy machine.
func deepQueue(t *testing.T, p *nstest.Pair, c *net.UDPConn) {
	t.Helper()
	nstest.MustDo(t, p.A.NS, func() error {
		l, err := vnl.LinkByName(p.A.Link)
		if err != nil {
			return err
		}
		return vnl.LinkSetTxQLen(l, 20000)
	})
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 64<<20)
	}); err != nil || serr != nil {
		t.Fatalf("send buffer: %v %v", err, serr)
	}
}

// starvation watches, until ctx ends, how long this process goes without
// running: a goroutine that wakes every millisecond records its longest
// gap. Read the result from the channel after ctx ends.
func starvation(ctx context.Context) <-chan time.Duration {
	out := make(chan time.Duration, 1)
	go func() {
		var worst time.Duration
		last := time.Now()
		for ctx.Err() == nil {
			time.Sleep(time.Millisecond)
			now := time.Now()
			worst = max(worst, now.Sub(last))
			last = now
		}
		out <- worst
	}()
	return out
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(float64(len(s))*p))]
}
