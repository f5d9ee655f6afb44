package mapping

import (
	"testing"

	"github.com/iotgw/gateway"
)

// benchSource maps a 20-register block to 10 points of the usual kinds:
// scaled 16-bit readings, 32-bit counters in either word order, floats,
// flags and a derived value.
const benchSource = `
t1: s16(hr[0]) * 0.1 unit "C"
t2: s16(hr[1]) * 0.1 unit "C"
rh: hr[2] / 100.0 unit "%"
p:  hr[3] * 0.1 + 900 unit "hPa"
e1: u32(hr[4], hr[5]) unit "Wh"
e2: u32(hr[7], hr[6]) unit "Wh"
fl: f32(hr[8], hr[9])
al: bit(hr[10], 3)
st: hr[11] & 0x0f
dt: t1 - t2
`

func BenchmarkMappingDecode(b *testing.B) {
	m := compile(b, benchSource)
	payload := make([]byte, 40)
	for i := range payload {
		payload[i] = byte(i * 11)
	}
	f := &gateway.Frame{Topic: "hr/0", Payload: payload}
	msg := &gateway.Message{Points: make([]gateway.Point, 0, 16)}
	const points = 10
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msg.Points = msg.Points[:0]
		if err := m.Decode(f, msg); err != nil {
			b.Fatal(err)
		}
	}
	if len(msg.Points) != points {
		b.Fatalf("%d points", len(msg.Points))
	}
	b.ReportMetric(float64(b.N)*points/b.Elapsed().Seconds(), "points/s")
}

func BenchmarkMappingEncode(b *testing.B) {
	m := compile(b, lossless)
	payload := make([]byte, 30)
	for i := range payload {
		payload[i] = byte(i * 11)
	}
	msg := &gateway.Message{Topic: "hr/0"}
	if err := m.Decode(&gateway.Frame{Topic: "hr/0", Payload: payload}, msg); err != nil {
		b.Fatal(err)
	}
	points := len(msg.Points)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		if buf, err = m.Encode(msg, buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*float64(points)/b.Elapsed().Seconds(), "points/s")
}

func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := Compile(benchSource); err != nil {
			b.Fatal(err)
		}
	}
}
