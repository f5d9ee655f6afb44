// Package impair degrades test traffic the way sch_netem would, for
// kernels that lack netem: a BPF fault injector chained after the shaper on
// egress (loss, duplication) and a userspace UDP relay (delay, jitter,
// reordering) that keeps each datagram's DSCP. It also holds the socket
// helpers tests use to send and receive with a DSCP.
//
//	f, _ := impair.AttachFaults(ifindex, impair.Faults{Loss: 0.3})
//	defer f.Close()
//	r := impair.NewRelay(in, out, dst, impair.RelayConfig{Delay: 50 * time.Millisecond})
package impair
