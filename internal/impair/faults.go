package impair

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Faults are the shares (0..1) of egress packets to drop and duplicate.
type Faults struct {
	Loss, Duplicate float64
}

// FaultStats count what the injector did.
type FaultStats struct {
	Seen, Dropped, Duplicated uint64
}

// Injector is an attached fault injector.
type Injector struct {
	objs faultObjects
	link link.Link
}

// AttachFaults loads the injector and attaches it last in the TCX egress
// chain of ifindex, so programs attached before it (the shaper) see every
// packet first. It needs root and a kernel with TCX.
func AttachFaults(ifindex int, f Faults) (*Injector, error) {
	in := &Injector{}
	if err := loadFaultObjects(&in.objs, nil); err != nil {
		return nil, fmt.Errorf("impair: load fault injector: %w", err)
	}
	if err := in.Set(f); err != nil {
		in.objs.Close()
		return nil, err
	}
	l, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: in.objs.InjectFaults,
		Attach: ebpf.AttachTCXEgress, Anchor: link.Tail()})
	if err != nil {
		in.objs.Close()
		return nil, fmt.Errorf("impair: attach fault injector: %w", err)
	}
	in.link = l
	return in, nil
}

func ppm(share float64) uint32 {
	return uint32(min(max(share, 0), 1) * 1e6)
}

// Set changes the fault rates in place.
func (in *Injector) Set(f Faults) error {
	v := faultFaultCfg{LossPpm: ppm(f.Loss), DupPpm: ppm(f.Duplicate)}
	if err := in.objs.FaultCfg.Put(uint32(0), v); err != nil {
		return fmt.Errorf("impair: set faults: %w", err)
	}
	return nil
}

// Stats sums the per-CPU counters.
func (in *Injector) Stats() (FaultStats, error) {
	var per []faultFaultStats
	if err := in.objs.FaultStats.Lookup(uint32(0), &per); err != nil {
		return FaultStats{}, fmt.Errorf("impair: read stats: %w", err)
	}
	var s FaultStats
	for _, p := range per {
		s.Seen += p.Seen
		s.Dropped += p.Dropped
		s.Duplicated += p.Duplicated
	}
	return s, nil
}

// Close detaches and frees the injector.
func (in *Injector) Close() error {
	err := in.link.Close()
	in.objs.Close()
	return err
}
