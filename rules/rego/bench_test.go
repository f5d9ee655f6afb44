package rego

import "testing"

// BenchmarkPolicyRoute evaluates the example policy for one message per
// op, on every core.
func BenchmarkPolicyRoute(b *testing.B) {
	p, err := Load(exampleDir, Options{Sinks: []string{"cloud", "alarms"}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		dst := make([]string, 0, 4)
		for pb.Next() {
			m := msg("env", "A", 85)
			dst = p.Route(m, dst[:0])
			if len(dst) != 2 {
				b.Errorf("sinks %v", dst)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
	if p.Errors() != 0 {
		b.Fatal(p.LastError())
	}
}
