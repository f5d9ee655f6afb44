// Command shaping attaches the eBPF traffic shaper to an interface from a
// YAML file and prints per-class rates every second until interrupted.
//
//	sudo go run ./examples/shaping -config examples/shaping/shaping.yaml -interface eth0
//
// It needs root (CAP_BPF or CAP_SYS_ADMIN, and CAP_NET_ADMIN). While it
// runs it owns the root qdisc of the interface; on exit it restores it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	gateway "github.com/iotgw/gateway"
	"github.com/iotgw/gateway/shaping"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "shaping:", err)
		os.Exit(1)
	}
}

func run() error {
	path := flag.String("config", "shaping.yaml", "YAML file with the shaping config")
	iface := flag.String("interface", "", "interface to attach to (overrides the file)")
	flag.Parse()
	data, err := os.ReadFile(*path)
	if err != nil {
		return err
	}
	cfg, err := shaping.ParseConfig(data)
	if err != nil {
		return err
	}
	if *iface != "" {
		cfg.Interface = *iface
	}
	s, err := shaping.New(cfg)
	if errors.Is(err, gateway.ErrNotSupported) {
		return fmt.Errorf("%w\n(a gateway would run on unshaped; this example has nothing else to do)", err)
	}
	if err != nil {
		return err
	}
	defer s.Close()
	attach, egress, events := s.Mode()
	fmt.Printf("attached to %s via %s, egress %s, events over %s\n", cfg.Interface, attach, egress, events)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	prev, err := s.Stats()
	if err != nil {
		return err
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	sampled := 0
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-s.Events():
			if ok {
				sampled++
			}
		case now := <-tick.C:
			cur, err := s.Stats()
			if err != nil {
				return err
			}
			dt := now.Sub(last).Seconds()
			fmt.Printf("%s  sampling 1:%d, %d events, %d lost\n", now.Format(time.TimeOnly), cur.SampleEvery, sampled,
				cur.EventsLost+cur.EventsDropped)
			for i, c := range cur.Classes {
				p := prev.Classes[i]
				fmt.Printf("  %-8s %5x  out %8.3f Mbit/s %7.0f pkt/s   in %8.3f Mbit/s %7.0f pkt/s %6d dropped\n",
					c.Name, c.Handle&0xffff,
					float64(c.Egress.Bytes-p.Egress.Bytes)*8/dt/1e6, float64(c.Egress.Packets-p.Egress.Packets)/dt,
					float64(c.Ingress.Bytes-p.Ingress.Bytes)*8/dt/1e6, float64(c.Ingress.Packets-p.Ingress.Packets)/dt,
					c.Ingress.Drops-p.Ingress.Drops)
			}
			prev, last, sampled = cur, now, 0
		}
	}
}
