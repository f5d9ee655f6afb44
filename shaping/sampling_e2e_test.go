package shaping

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	vnl "github.com/vishvananda/netlink"

	"github.com/iotgw/gateway/internal/nstest"
)

// TestRouteRaisesSampling adds a route in the shaper's namespace and
// expects the sampling rate to go from 1:1000 to 1:100 within a second.
func TestRouteRaisesSampling(t *testing.T) {
	p := newPair(t)
	s := shaperIn(t, p.A.NS, Config{Interface: p.A.Link, Egress: "none",
		Sampling: SamplingConfig{Interval: 100 * time.Millisecond}})
	if st, _ := s.Stats(); st.SampleEvery != 1000 {
		t.Fatalf("initial sampling 1:%d, want 1:1000", st.SampleEvery)
	}
	// A route per attempt; a second attempt only when this process was
	// itself descheduled for long enough to explain a miss.
	routes := [][]string{{"10.200.0.0/24", "10.201.0.0/24", "10.202.0.0/24"}, {"fd00:200::/64", "fd00:201::/64", "fd00:202::/64"}}
	for _, family := range routes {
		for attempt, dst := range family {
			s.sampler.RouteAdded(time.Time{}) // back to normal
			if !waitFor(10*time.Second, func() bool { st, _ := s.Stats(); return st.SampleEvery == 1000 }) {
				t.Fatalf("sampling did not return to 1:1000")
			}
			ctx, cancel := context.WithCancel(context.Background())
			gapCh := starvation(ctx)
			addRoute(t, p, dst)
			start := time.Now()
			ok := waitFor(time.Second, func() bool { st, _ := s.Stats(); return st.SampleEvery == 100 })
			took := time.Since(start)
			cancel()
			gap := <-gapCh
			if ok && took <= time.Second {
				t.Logf("%s: sampling 1:100 after %v", dst, took.Round(time.Millisecond))
				break
			}
			st, _ := s.Stats()
			if gap < 300*time.Millisecond || attempt == len(family)-1 {
				t.Fatalf("%s: sampling 1:%d one second after adding a route, want 1:100 (longest scheduling gap %v)", dst, st.SampleEvery, gap)
			}
			t.Logf("%s: missed while this process was descheduled for %v; again", dst, gap)
		}
	}
}

func addRoute(t *testing.T, p *nstest.Pair, dst string) {
	t.Helper()
	nstest.MustDo(t, p.A.NS, func() error {
		_, n, err := net.ParseCIDR(dst)
		if err != nil {
			return err
		}
		gw := net.IP(p.B.IPv4.AsSlice())
		if n.IP.To4() == nil {
			gw = net.IP(p.B.IPv6.AsSlice())
		}
		l, err := vnl.LinkByName(p.A.Link)
		if err != nil {
			return err
		}
		return vnl.RouteAdd(&vnl.Route{LinkIndex: l.Attrs().Index, Dst: n, Gw: gw})
	})
}

// TestEventsAccounting samples every packet and checks that each one is
// either delivered, dropped from the full Events channel, or counted lost
// in the kernel, for the ring buffer and the perf buffer.
func TestEventsAccounting(t *testing.T) {
	for _, transport := range []string{"ringbuf", "perf"} {
		t.Run(transport, func(t *testing.T) {
			p := newPair(t)
			off := false
			s := shaperIn(t, p.A.NS, Config{Interface: p.A.Link, Egress: "none", Events: transport, Classes: e2eClasses(),
				Sampling: SamplingConfig{Every: 1, WatchRoutes: &off}})
			if _, _, ev := s.Mode(); ev != transport {
				t.Fatalf("events %s, want %s", ev, transport)
			}
			rx := startReceiver(t, listen(t, p.B.NS, netip.AddrPortFrom(p.B.IPv4, portData)))
			tx := listen(t, p.A.NS, netip.AddrPortFrom(p.A.IPv4, 0))
			dst := netip.AddrPortFrom(p.B.IPv4, portData)
			quiet(t, s)
			for len(s.Events()) > 0 { // events of the chatter before
				<-s.Events()
			}
			base, _ := s.Stats()

			// A small flow, read as it comes: every event is delivered
			// and describes the packet.
			send(t, tx, dst, DSCPAF41, 20, 100)
			got, other := 0, 0
			timeout := time.After(10 * time.Second)
			for got < 20 {
				select {
				case e := <-s.Events():
					if e.Dst != p.B.IPv4 && e.Src != p.B.IPv4 {
						other++ // link chatter (IPv6 MLD), sampled too
						continue
					}
					if e.Direction != Egress || e.Class != 1 || e.DSCP != DSCPAF41 || e.Proto != 17 ||
						e.Src != p.A.IPv4 || e.Dst != p.B.IPv4 || e.Len != 100+l2v4 || e.EtherType != 0x0800 {
						t.Fatalf("event %+v does not describe the AF41 datagram", e)
					}
					got++
				case <-timeout:
					t.Fatalf("%d of 20 events arrived", got)
				}
			}

			// A burst nobody reads: the channel fills, the rest is
			// counted, nothing goes missing unaccounted.
			const burst = 6000
			send(t, tx, dst, DSCPBestEffort, burst, 64)
			if !waitFor(10*time.Second, func() bool { return rx.total() == 20+burst }) {
				t.Fatalf("receiver got %d datagrams", rx.total())
			}
			var drained uint64
			var sampled uint64
			if !waitFor(10*time.Second, func() bool {
				for {
					select {
					case <-s.Events():
						drained++
						continue
					default:
					}
					break
				}
				st, _ := s.Stats()
				sampled = 0
				for i, c := range st.Classes {
					sampled += c.Egress.Packets + c.Ingress.Packets - base.Classes[i].Egress.Packets - base.Classes[i].Ingress.Packets
				}
				sampled += st.Other[Egress].Packets + st.Other[Ingress].Packets - base.Other[Egress].Packets - base.Other[Ingress].Packets
				return uint64(got+other)+drained+st.EventsDropped+st.EventsLost-base.EventsDropped-base.EventsLost == sampled
			}) {
				st, _ := s.Stats()
				t.Fatalf("sampled %d packets but %d delivered + %d drained + %d dropped + %d lost",
					sampled, got, drained, st.EventsDropped, st.EventsLost)
			}
			st, _ := s.Stats()
			t.Logf("%s: %d packets sampled, %d delivered, %d dropped (channel full), %d lost (kernel)",
				transport, sampled, uint64(got)+drained, st.EventsDropped, st.EventsLost)
			if st.EventsDropped+st.EventsLost == 0 {
				t.Errorf("a burst of %d unread events lost nothing; the channel holds only %d", burst, eventQueue)
			}
		})
	}
}

// TestBusyLinkSlowsSampling sends above 90 % of the configured link rate
// and expects sampling to drop to 1:5000, then recover when the link idles.
func TestBusyLinkSlowsSampling(t *testing.T) {
	p := newPair(t)
	off := false
	s := shaperIn(t, p.A.NS, Config{Interface: p.A.Link, Egress: "none", LinkBits: 2_000_000,
		Sampling: SamplingConfig{Interval: 100 * time.Millisecond, WatchRoutes: &off}})
	rx := startReceiver(t, listen(t, p.B.NS, netip.AddrPortFrom(p.B.IPv4, portData)))
	tx := listen(t, p.A.NS, netip.AddrPortFrom(p.A.IPv4, 0))
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Second)
	defer cancel()
	var busy bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		blast(ctx, tx, netip.AddrPortFrom(p.B.IPv4, portData), DSCPBestEffort, 500, l2v4, 4_000_000)
	}()
	busy = waitFor(5*time.Second, func() bool { st, _ := s.Stats(); return st.SampleEvery == 5000 })
	cancel()
	wg.Wait()
	if !busy {
		st, _ := s.Stats()
		t.Fatalf("sampling 1:%d with the link at 200%%, want 1:5000 (received %d)", st.SampleEvery, rx.total())
	}
	if !waitFor(10*time.Second, func() bool { st, _ := s.Stats(); return st.SampleEvery == 1000 }) {
		t.Fatal("sampling did not return to 1:1000 when the link went idle")
	}
}
