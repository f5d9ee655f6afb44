package impair

import (
	"container/heap"
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"
)

// RelayConfig degrades a UDP flow like netem's delay and reorder options.
type RelayConfig struct {
	// Delay is the mean added latency; Jitter the most it varies either
	// way (uniformly).
	Delay, Jitter time.Duration
	// Reorder is the share (0..1) of datagrams sent at once, overtaking
	// the delayed ones, as netem's "reorder" does.
	Reorder float64
	// Seed makes the random choices repeatable.
	Seed uint64
}

// Relay reads datagrams from in and forwards them from out to dst, keeping
// each datagram's DSCP, after the configured delay, jitter and reordering.
// At most 4096 datagrams wait at once; more are dropped.
type Relay struct {
	in, out *net.UDPConn
	dst     netip.AddrPort
	cfg     RelayConfig

	mu      sync.Mutex
	queue   pending
	wake    chan struct{}
	dropped int
}

// NewRelay returns a relay; Run starts it.
func NewRelay(in, out *net.UDPConn, dst netip.AddrPort, cfg RelayConfig) *Relay {
	return &Relay{in: in, out: out, dst: dst, cfg: cfg, wake: make(chan struct{}, 1)}
}

type datagram struct {
	due  time.Time
	seq  uint64
	dscp uint8
	b    []byte
}

type pending []datagram

func (p pending) Len() int { return len(p) }
func (p pending) Less(i, j int) bool {
	return p[i].due.Before(p[j].due) || p[i].due.Equal(p[j].due) && p[i].seq < p[j].seq
}
func (p pending) Swap(i, j int) { p[i], p[j] = p[j], p[i] }
func (p *pending) Push(x any)   { *p = append(*p, x.(datagram)) }
func (p *pending) Pop() any {
	old := *p
	d := old[len(old)-1]
	*p = old[:len(old)-1]
	return d
}

// Run relays until ctx ends or in is closed; it closes nothing.
func (r *Relay) Run(ctx context.Context) error {
	if err := EnableDSCP(r.in); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.send(ctx)
	}()
	stop := context.AfterFunc(ctx, func() { r.in.SetReadDeadline(time.Now()) })
	defer stop()
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 0x5eed))
	var seq uint64
	var err error
	for {
		buf := make([]byte, 2048)
		n, dscp, _, rerr := ReadDSCP(r.in, buf)
		if rerr != nil {
			if ctx.Err() == nil {
				err = rerr
			}
			break
		}
		delay := r.cfg.Delay
		if r.cfg.Jitter > 0 {
			delay += time.Duration(rng.Int64N(int64(2*r.cfg.Jitter)+1)) - r.cfg.Jitter
		}
		if rng.Float64() < r.cfg.Reorder {
			delay = 0
		}
		seq++
		r.mu.Lock()
		if r.queue.Len() < 4096 {
			heap.Push(&r.queue, datagram{due: time.Now().Add(max(delay, 0)), seq: seq, dscp: dscp, b: buf[:n]})
		} else {
			r.dropped++
		}
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	cancel()
	wg.Wait()
	return err
}

func (r *Relay) send(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		r.mu.Lock()
		var next time.Duration = time.Hour
		for r.queue.Len() > 0 {
			d := r.queue[0]
			if wait := time.Until(d.due); wait > 0 {
				next = wait
				break
			}
			heap.Pop(&r.queue)
			r.mu.Unlock()
			_ = WriteDSCP(r.out, d.b, d.dscp, r.dst)
			r.mu.Lock()
		}
		r.mu.Unlock()
		t.Reset(next)
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-t.C:
		}
	}
}

// Dropped counts datagrams dropped because the queue was full.
func (r *Relay) Dropped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}
