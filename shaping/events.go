package shaping

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"
)

// eventSize is sizeof(struct sample_event) in bpf/shaper.c.
const eventSize = 56

// Event is one sampled packet.
type Event struct {
	// Kernel is the CLOCK_MONOTONIC time the packet was seen.
	Kernel time.Duration
	// Ifindex is the interface the packet crossed.
	Ifindex uint32
	// Len is the packet length at the hook, including the L2 header.
	Len uint32
	// EtherType is the L3 protocol (0x0800 IPv4, 0x86DD IPv6).
	EtherType uint16
	// DSCP as read before any re-marking.
	DSCP uint8
	// Class is the class index, or MaxClasses for packets that are not IP
	// or could not be parsed.
	Class uint8
	// Direction is Egress or Ingress.
	Direction Direction
	// Proto is the IP protocol (6 TCP, 17 UDP) or IPv6 next header.
	Proto uint8
	// Dropped is set when the policer or EDT horizon dropped the packet.
	Dropped bool
	// Src and Dst are the IP addresses; invalid for non-IP packets.
	Src, Dst netip.Addr
}

// DecodeEvent parses a raw sample record.
func DecodeEvent(b []byte) (Event, error) {
	if len(b) < eventSize {
		return Event{}, fmt.Errorf("shaping: event of %d bytes, want %d", len(b), eventSize)
	}
	e := Event{
		Kernel:    time.Duration(binary.NativeEndian.Uint64(b[0:8])),
		Ifindex:   binary.NativeEndian.Uint32(b[8:12]),
		Len:       binary.NativeEndian.Uint32(b[12:16]),
		EtherType: binary.NativeEndian.Uint16(b[16:18]),
		DSCP:      b[18],
		Class:     b[19],
		Direction: Direction(b[20]),
		Proto:     b[21],
		Dropped:   b[22] != 0,
	}
	switch e.EtherType {
	case 0x0800:
		e.Src = netip.AddrFrom4([4]byte(b[24:28]))
		e.Dst = netip.AddrFrom4([4]byte(b[40:44]))
	case 0x86DD:
		e.Src = netip.AddrFrom16([16]byte(b[24:40]))
		e.Dst = netip.AddrFrom16([16]byte(b[40:56]))
	}
	return e, nil
}

// Events delivers sampled packets. The channel holds 4096 events; when the
// reader falls behind, new events are dropped and counted in
// Stats.EventsDropped. It is closed by Close.
func (s *Shaper) Events() <-chan Event { return s.eventsCh }

func (s *Shaper) deliver(raw []byte) {
	e, err := DecodeEvent(raw)
	if err != nil {
		s.dropped.Add(1)
		return
	}
	select {
	case s.eventsCh <- e:
	default:
		s.dropped.Add(1)
	}
}

// startReaders starts the event reader, the route watcher and the sampling
// loop; Close stops and waits for them.
func (s *Shaper) startReaders() error {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	switch s.events {
	case "ringbuf":
		rd, err := ringbuf.NewReader(s.objs.Events)
		if err != nil {
			return fmt.Errorf("shaping: ring buffer reader: %w", err)
		}
		s.closer = append(s.closer, rd.Close)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(s.eventsCh)
			var rec ringbuf.Record
			for {
				if err := rd.ReadInto(&rec); err != nil {
					if errors.Is(err, os.ErrClosed) {
						return
					}
					continue
				}
				s.deliver(rec.RawSample)
			}
		}()
	default:
		rd, err := perf.NewReader(s.objs.Events, 64*1024)
		if err != nil {
			return fmt.Errorf("shaping: perf reader: %w", err)
		}
		s.closer = append(s.closer, rd.Close)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(s.eventsCh)
			var rec perf.Record
			for {
				if err := rd.ReadInto(&rec); err != nil {
					if errors.Is(err, os.ErrClosed) {
						return
					}
					continue
				}
				if rec.LostSamples > 0 {
					// Already counted by the program when its output
					// failed; perf repeats them late, with the next event.
					continue
				}
				s.deliver(rec.RawSample)
			}
		}()
	}

	routes := make(chan struct{}, 1)
	if s.cfg.Sampling.WatchRoutes == nil || *s.cfg.Sampling.WatchRoutes {
		c, err := dialRoutes()
		if err != nil {
			return fmt.Errorf("shaping: subscribe to route events: %w", err)
		}
		s.closer = append(s.closer, c.Close)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			watchRoutes(c, func() bool { return ctx.Err() != nil }, func() {
				select {
				case routes <- struct{}{}:
				default:
				}
			})
		}()
	}
	interval := s.cfg.Sampling.withDefaults().Interval
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runSampling(ctx, interval, routes)
	}()
	return nil
}

// runSampling re-evaluates the sampling rate every interval and at once
// when a route is added.
func (s *Shaper) runSampling(ctx context.Context, interval time.Duration, routes <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	prev, _ := s.Stats()
	prevAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-routes:
			s.sampler.RouteAdded(time.Now())
		case <-t.C:
			cur, err := s.Stats()
			if err != nil {
				continue
			}
			now := time.Now()
			dt := now.Sub(prevAt).Seconds()
			var eg, in uint64
			for i := range cur.Classes {
				eg += cur.Classes[i].Egress.Bytes - prev.Classes[min(i, len(prev.Classes)-1)].Egress.Bytes
				in += cur.Classes[i].Ingress.Bytes - prev.Classes[min(i, len(prev.Classes)-1)].Ingress.Bytes
			}
			util := 0.0
			if len(cur.Classes) == len(prev.Classes) && dt > 0 {
				util = float64(max(eg, in)*8) / dt / float64(cur.LinkBits)
			}
			s.sampler.Observe(util, cur.EventsLost-min(prev.EventsLost, cur.EventsLost))
			prev, prevAt = cur, now
		}
		s.mu.Lock()
		if !s.closed {
			if n := s.sampler.Every(); n != s.every.Load() {
				_ = s.writeSettings(n)
			}
		}
		s.mu.Unlock()
	}
}
