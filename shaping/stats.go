package shaping

import (
	"fmt"
)

// Counter counts packets and bytes (L2 length) a class passed, and packets
// it dropped (ingress policer or EDT horizon).
type Counter struct {
	Packets, Bytes, Drops uint64
}

// ClassStats are the counters of one class.
type ClassStats struct {
	Name            string
	Handle          uint32 // HTB major:minor written to skb->priority
	Egress, Ingress Counter
}

// Stats is a snapshot of the shaper's counters.
type Stats struct {
	Classes []ClassStats
	// Other counts packets that are not IPv4/IPv6 or are malformed; they
	// pass unclassified. Index by Direction.
	Other [2]Counter
	// SampleEvery is the current sampling rate N (0: off).
	SampleEvery uint32
	// EventsLost counts events the kernel could not hand over (ring or
	// perf buffer full); EventsDropped those the Events channel had no room
	// for.
	EventsLost, EventsDropped uint64
	// LinkBits is the link capacity the policy assumes.
	LinkBits uint64
}

// Stats sums the per-CPU counters.
func (s *Shaper) Stats() (Stats, error) {
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	classes := cfg.effectiveClasses()
	st := Stats{Classes: make([]ClassStats, len(classes)), SampleEvery: s.every.Load(),
		EventsDropped: s.dropped.Load(), LinkBits: cfg.linkBits()}
	var per []shaperCounter
	read := func(slot uint32) (Counter, error) {
		if err := s.objs.Counters.Lookup(slot, &per); err != nil {
			return Counter{}, fmt.Errorf("shaping: read counters %d: %w", slot, err)
		}
		var c Counter
		for _, p := range per {
			c.Packets += p.Packets
			c.Bytes += p.Bytes
			c.Drops += p.Drops
		}
		return c, nil
	}
	var err error
	for i, cl := range classes {
		st.Classes[i].Name = cl.Name
		st.Classes[i].Handle = uint32(cfg.major())<<16 | uint32(cl.minor(i))
		if st.Classes[i].Egress, err = read(uint32(i)); err != nil {
			return st, err
		}
		if st.Classes[i].Ingress, err = read(uint32(slots + i)); err != nil {
			return st, err
		}
	}
	if st.Other[Egress], err = read(slotOther); err != nil {
		return st, err
	}
	if st.Other[Ingress], err = read(slots + slotOther); err != nil {
		return st, err
	}
	var lost []uint64
	if err := s.objs.SampleState.Lookup(uint32(1), &lost); err != nil {
		return st, fmt.Errorf("shaping: read lost events: %w", err)
	}
	for _, l := range lost {
		st.EventsLost += l
	}
	return st, nil
}
