package shaping

import (
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// BenchmarkProgram reports the in-kernel cost per packet (BPF_PROG_TEST_RUN
// with repeat) of each program path, next to an empty program that shows
// the runner's own overhead. ns/pkt is the number to read; the standard
// ns/op includes the syscall and is not per packet.
func BenchmarkProgram(b *testing.B) {
	base := testClasses()
	policed := testClasses()
	policed.Classes[2].IngressBits = 1 << 40 // never drops, always takes the lock
	remarked := testClasses()
	// EF is re-marked to CS5 and CS5 back to EF, so each repeated run of
	// the same buffer really rewrites the header.
	remarked.Classes[0].Remark = u8(40)
	remarked.Classes = append(remarked.Classes, ClassConfig{Name: "cs5", DSCP: []uint8{40}, Minor: 0x40, Remark: u8(46)})
	edt := testClasses()
	edt.Classes[0].RateBits = 1 << 40

	empty, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}})
	if err != nil {
		b.Skipf("load empty program: %v", err)
	}
	defer empty.Close()

	cases := []struct {
		name string
		cfg  Config
		edt  bool
		prog func(*Shaper) *ebpf.Program
		pkt  []byte
	}{
		{"empty program (runner overhead)", base, false, nil, ipv4UDP(46, 0, 64)},
		{"egress classify+counters ipv4", base, false, egressProg, ipv4UDP(46, 0, 64)},
		{"egress classify+counters ipv6", base, false, egressProg, ipv6UDP(46, 0, 1, 64)},
		{"egress classify+remark ipv4", remarked, false, egressProg, ipv4UDP(46, 0, 64)},
		{"egress classify+EDT ipv4", edt, true, egressProg, ipv4UDP(46, 0, 64)},
		{"ingress classify+counters ipv4", base, false, ingressProg, ipv4UDP(0, 0, 64)},
		{"ingress classify+policer ipv4", policed, false, ingressProg, ipv4UDP(0, 0, 64)},
		{"ingress non-IP", base, false, ingressProg, append(ether(0x0806), make([]byte, 28)...)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			prog := empty
			if c.prog != nil {
				s := loaded(b, Config{})
				s.mu.Lock()
				if c.edt {
					s.egress = "edt"
				}
				s.cfg = c.cfg.clone()
				err := s.program(c.cfg)
				if err == nil {
					err = s.writeSettings(0)
				}
				s.mu.Unlock()
				if err != nil {
					b.Fatal(err)
				}
				prog = c.prog(s)
			}
			b.ReportAllocs()
			b.ResetTimer()
			_, per, err := prog.Benchmark(c.pkt, b.N, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
		})
	}
}

func egressProg(s *Shaper) *ebpf.Program  { return s.objs.ClassifyEgress }
func ingressProg(s *Shaper) *ebpf.Program { return s.objs.ClassifyIngress }

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEvents samples every packet and reads the events in Go through
// the Events channel. The packets are produced by test runs in chunks small
// enough for either buffer (512 events), each chunk read completely before
// the next, so nothing is lost and the numbers compare the transports at
// their sustainable rate: events/s end to end, CPU (user+system of the
// whole process: BPF producer, reader and consumer) per event, and the
// producer's in-kernel ns/event.
func BenchmarkEvents(b *testing.B) {
	const chunk = 512
	for _, transport := range []string{"ringbuf", "perf"} {
		b.Run(transport, func(b *testing.B) {
			s := loaded(b, Config{Events: transport, Sampling: SamplingConfig{Every: 1}})
			s.mu.Lock()
			err := s.writeSettings(1)
			s.mu.Unlock()
			if err != nil {
				b.Fatal(err)
			}
			pkt := ipv4UDP(46, 0, 64)
			var got atomic.Int64
			var target atomic.Int64
			reached := make(chan struct{}, 1)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for range s.Events() {
					if got.Add(1) == target.Load() {
						reached <- struct{}{}
					}
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			cpu0, t0 := cpuTime(), time.Now()
			var produce time.Duration
			for sent := 0; sent < b.N; {
				n := min(chunk, b.N-sent)
				sent += n
				target.Store(int64(sent))
				_, per, err := s.objs.ClassifyEgress.Benchmark(pkt, n, nil)
				if err != nil {
					b.Fatal(err)
				}
				produce += per * time.Duration(n)
				if got.Load() < int64(sent) {
					select {
					case <-reached:
					case <-time.After(5 * time.Second):
						st, _ := s.Stats()
						b.Fatalf("%d of %d events after 5s (lost %d, dropped %d)", got.Load(), sent, st.EventsLost, st.EventsDropped)
					}
				}
				select { // a signal for a chunk already counted above
				case <-reached:
				default:
				}
			}
			elapsed, cpu := time.Since(t0), cpuTime()-cpu0
			b.StopTimer()
			n := float64(got.Load())
			b.ReportMetric(n/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/event")
			b.ReportMetric(float64(produce.Nanoseconds())/n, "bpf-ns/event")
			s.Close()
			<-done
		})
	}
}
