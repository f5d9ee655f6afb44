package rules

import (
	"fmt"
	"strings"
	"testing"

	"github.com/iotgw/gateway"
)

// benchSet builds n rules the way a plant would have them: one per line of
// a site, each with its own topic filter and a condition on a point and a
// tag, plus a catch-all that tags every message.
func benchSet(b *testing.B, n int) *Set {
	var sb strings.Builder
	sb.WriteString("points: {temperature: float, humidity: float}\ntags: [site]\nrules:\n")
	sb.WriteString("  - {name: tag-all, set_tags: {gw: edge1}}\n")
	for i := 0; i < n-1; i++ {
		fmt.Fprintf(&sb, "  - {name: r%d, match: {topic: \"plant/s%d/line%d/#\"}, when: 'temperature > %d && site == \"A\"', sinks: [cloud]}\n", i, i%10, i, i%50)
	}
	s, err := Compile(mustParse(b, sb.String()), Options{Sinks: []string{"cloud"}})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func mustParse(b *testing.B, s string) *Document {
	d, err := Parse([]byte(s), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func benchRoute(b *testing.B, n int) {
	s := benchSet(b, n)
	lines := n - 1
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		msgs := make([]*gateway.Message, 64) // per goroutine: Route rewrites them
		for i := range msgs {
			l := i * 7 % lines
			m := &gateway.Message{Device: fmt.Sprintf("dev%d", i), Topic: fmt.Sprintf("plant/s%d/line%d/env", l%10, l)}
			m.Tags = m.Tags.Set("site", "A")
			m.AddPoint("temperature", gateway.Float(60), "C")
			m.AddPoint("humidity", gateway.Float(40), "%")
			msgs[i] = m
		}
		dst := make([]string, 0, 4)
		i := 0
		for pb.Next() {
			m := msgs[i&63]
			i++
			m.Tags = m.Tags[:1] // undo the catch-all's tag so every run is alike
			dst = s.Route(m, dst[:0])
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
	if s.Errors() != 0 {
		b.Fatalf("rule errors: %d", s.Errors())
	}
}

// BenchmarkRoute10 and BenchmarkRoute1000 route messages through 10 and
// 1,000 rules on every core (b.RunParallel); msg/s is the total.
func BenchmarkRoute10(b *testing.B)   { benchRoute(b, 10) }
func BenchmarkRoute1000(b *testing.B) { benchRoute(b, 1000) }
