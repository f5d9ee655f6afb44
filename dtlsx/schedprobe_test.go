package dtlsx

import (
	"fmt"
	"math"
	"runtime/metrics"
	"sync"
	"time"
)

// schedProbe samples this process's Go scheduler while a storm runs: the
// distribution of goroutine scheduling latency (runnable to running), the
// run queue (sampled every millisecond), and the GC cycles and pauses.
type schedProbe struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	samples []metrics.Sample
	before  []metrics.Sample
	maxRun  uint64
	sumRun  uint64
	n       uint64
}

func startSchedProbe() *schedProbe {
	names := []string{"/sched/latencies:seconds", "/gc/cycles/total:gc-cycles", "/sched/pauses/total/gc:seconds", "/sched/goroutines/runnable:goroutines"}
	p := &schedProbe{stop: make(chan struct{})}
	for _, n := range names {
		p.before = append(p.before, metrics.Sample{Name: n})
		p.samples = append(p.samples, metrics.Sample{Name: n})
	}
	metrics.Read(p.before)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		s := []metrics.Sample{{Name: "/sched/goroutines/runnable:goroutines"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
			metrics.Read(s)
			v := s[0].Value.Uint64()
			p.maxRun = max(p.maxRun, v)
			p.sumRun += v
			p.n++
		}
	}()
	return p
}

func (p *schedProbe) end() string {
	close(p.stop)
	p.wg.Wait()
	metrics.Read(p.samples)
	lat := histDelta(p.before[0].Value.Float64Histogram(), p.samples[0].Value.Float64Histogram())
	gcp := histDelta(p.before[2].Value.Float64Histogram(), p.samples[2].Value.Float64Histogram())
	gcs := p.samples[1].Value.Uint64() - p.before[1].Value.Uint64()
	mean := 0.0
	if p.n > 0 {
		mean = float64(p.sumRun) / float64(p.n)
	}
	return fmt.Sprintf("sched latency p50 %s p90 %s p99 %s p99.9 %s; runnable mean %.1f max %d; GC %d cycles, pause p99 %s max %s",
		quantile(lat, 0.5), quantile(lat, 0.9), quantile(lat, 0.99), quantile(lat, 0.999), mean, p.maxRun,
		gcs, quantile(gcp, 0.99), quantile(gcp, 1))
}

type hist struct {
	counts  []uint64
	buckets []float64
}

func histDelta(a, b *metrics.Float64Histogram) hist {
	h := hist{counts: make([]uint64, len(b.Counts)), buckets: b.Buckets}
	for i := range b.Counts {
		h.counts[i] = b.Counts[i] - a.Counts[i]
	}
	return h
}

// quantile returns the upper bound of the bucket holding quantile q.
func quantile(h hist, q float64) time.Duration {
	var total uint64
	for _, c := range h.counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(total)))
	var cum uint64
	for i, c := range h.counts {
		cum += c
		if cum >= want {
			hi := h.buckets[i+1]
			if math.IsInf(hi, 1) {
				hi = h.buckets[i]
			}
			return time.Duration(hi * float64(time.Second))
		}
	}
	return 0
}
