package layout

import (
	"fmt"
	"testing"

	"github.com/iotgw/gateway"
)

// benchLayout is a 20-point frame of the mix a PLC or meter sends: 16-bit
// scaled readings, 32-bit counters and floats in Modbus word order, flags.
func benchLayout(b *testing.B) (*Layout, []byte) {
	var fs []Field
	off := 0
	for i := 0; i < 20; i++ {
		f := Field{Name: fmt.Sprintf("p%02d", i), Offset: off}
		switch i % 5 {
		case 0:
			f.Type, f.Scale, f.Unit = Int16, 0.1, "C"
		case 1:
			f.Type = Uint16
		case 2:
			f.Type, f.Order = Uint32, WordSwap
		case 3:
			f.Type = Float32
		case 4:
			f.Type, f.Bit = Bool, 3
		}
		if f.Type == Bool {
			off++
		} else {
			off += f.Type.Size()
		}
		fs = append(fs, f)
	}
	l, err := New(fs, 0)
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, l.Size())
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	return l, payload
}

func BenchmarkLayoutDecode20(b *testing.B) {
	l, payload := benchLayout(b)
	f := &gateway.Frame{Payload: payload}
	m := &gateway.Message{Points: make([]gateway.Point, 0, 32)}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Points = m.Points[:0]
		if err := l.Decode(f, m); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*20/b.Elapsed().Seconds(), "points/s")
}

func BenchmarkLayoutEncode20(b *testing.B) {
	l, payload := benchLayout(b)
	m := &gateway.Message{}
	if err := l.Decode(&gateway.Frame{Payload: payload}, m); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var err error
		if buf, err = l.Encode(m, buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*20/b.Elapsed().Seconds(), "points/s")
}
