package mapping

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec/layout"
)

const docExample = `
# uplink: name ':' expression [unit "text"]
temperature: s16(hr[0]) * 0.1  unit "C"
humidity:    hr[1] / 100.0     unit "%"
energy:      u32(hr[3], hr[2]) unit "Wh"   # low word first: name the high word first
flow:        f32(hr[4], hr[5])
alarm:       bit(hr[6], 3)
running:     coil[0]
dewpoint:    temperature - (100 - humidity) / 5   # earlier points by name

# downlink: target '=' expression over the command's points
s16(hr[0])        = round(temperature * 10)
hr[1]             = round(humidity * 100)
u32(hr[3], hr[2]) = energy
f32(hr[4], hr[5]) = flow
coil[0]           = running
`

func regs(vs ...uint16) []byte {
	b := make([]byte, 2*len(vs))
	for i, v := range vs {
		b[2*i], b[2*i+1] = byte(v>>8), byte(v)
	}
	return b
}

func compile(t testing.TB, src string) *Mapping {
	t.Helper()
	m, err := Compile(src)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return m
}

func decode(t testing.TB, m *Mapping, topic string, payload []byte) []gateway.Point {
	t.Helper()
	msg := &gateway.Message{}
	if err := m.Decode(&gateway.Frame{Topic: topic, Payload: payload}, msg); err != nil {
		t.Fatalf("decode %s: %v", topic, err)
	}
	return msg.Points
}

func TestDocExample(t *testing.T) {
	m := compile(t, docExample)
	f := math.Float32bits(1.5)
	pts := decode(t, m, "hr/0", regs(0xff38, 4550, 0x0002, 0x0001, uint16(f>>16), uint16(f), 0x0008))
	want := "[{temperature -20 C} {humidity 45.5 %} {energy 65538 Wh} {flow 1.5 } {alarm true } {dewpoint -30.9 }]"
	if got := fmt.Sprint(pts); got != want {
		t.Fatalf("\n got %s\nwant %s", got, want)
	}
	if pts[0].Value.Kind() != gateway.KindFloat || pts[2].Value.Kind() != gateway.KindInt || pts[4].Value.Kind() != gateway.KindBool {
		t.Fatalf("kinds: %v", pts)
	}
	// A coil block yields only the coil point.
	if got := fmt.Sprint(decode(t, m, "coil/0", []byte{1})); got != "[{running true }]" {
		t.Fatalf("coil block: %s", got)
	}
	// A block that holds only some registers yields only the points inside.
	if got := fmt.Sprint(decode(t, m, "hr/1", regs(100, 0, 0))); got != "[{humidity 1 %} {energy 0 Wh}]" {
		t.Fatalf("partial block: %s", got)
	}
	// Encode the decoded points back (the uplink-only points are ignored).
	msg := &gateway.Message{Topic: "hr/0", Points: pts[:4]}
	out, err := m.Encode(msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := regs(0xff38, 4550, 0x0002, 0x0001, uint16(f>>16), uint16(f)); !bytes.Equal(out, want) {
		t.Fatalf("encode: % x, want % x", out, want)
	}
	out, err = m.Encode(&gateway.Message{Topic: "coil/0", Points: []gateway.Point{{Name: "running", Value: gateway.Bool(true)}}}, nil)
	if err == nil || !errors.Is(err, layout.ErrMissingField) {
		t.Fatalf("coil write of 1 of 8 coils: %x %v", out, err)
	}
}

func TestExpressions(t *testing.T) {
	cases := []struct {
		expr string
		regs []uint16
		want string
	}{
		{"1 + 2 * 3", nil, "7"},
		{"(1 + 2) * 3", nil, "9"},
		{"7 % 3 + (1 << 4) + (0xff & 0x0f) + (5 | 2) + (6 ^ 3)", nil, "44"},
		{"-hr[0]", []uint16{5}, "-5"},
		{"s16(hr[0])", []uint16{0xffff}, "-1"},
		{"u16(hr[0])", []uint16{0xffff}, "65535"},
		{"s32(hr[0], hr[1])", []uint16{0xffff, 0xfffe}, "-2"},
		{"u32(hr[1], hr[0])", []uint16{0x0002, 0x0001}, "65538"},
		{"s64(hr[0], hr[1], hr[2], hr[3])", []uint16{0xffff, 0xffff, 0xffff, 0xfff0}, "-16"},
		{"u64(hr[0], hr[1], hr[2], hr[3])", []uint16{0, 0, 1, 0}, "65536"},
		{"f64(hr[0], hr[1], hr[2], hr[3])", []uint16{0x3ff8, 0, 0, 0}, "1.5"},
		{"hr[0] / 4", []uint16{10}, "2.5"},
		{"hr[0] > 3 && hr[0] < 10", []uint16{5}, "true"},
		{"hr[0] > 3 || hr[0] % 0 == 1", []uint16{5}, "true"},
		{"!(hr[0] == 5)", []uint16{5}, "false"},
		{"hr[0] == 5.0", []uint16{5}, "true"},
		{"hr[0] != 5 ? 1 : 2.5", []uint16{5}, "2.5"},
		{"hr[0] == 5 ? 1 : 2.5", []uint16{5}, "1"},
		{"round(2.5) + floor(-1.5) + ceil(1.2) + trunc(-1.7) + int(3.9)", nil, "5"},
		{"abs(-3) + abs(-1.5)", nil, "4.5"},
		{"min(3, 2.5) + max(1, 2) + clamp(15, 0, 10)", nil, "14.5"},
		{"bit(hr[0], 15)", []uint16{0x8000}, "true"},
		{"float(hr[0]) * 0.5", []uint16{3}, "1.5"},
		{"1e3 + .5", nil, "1000.5"},
		{"-(-2.0)", nil, "2"},
	}
	for _, c := range cases {
		m, err := Compile("x: " + c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		payload := regs(c.regs...)
		if len(c.regs) == 0 {
			payload = regs(0)
		}
		pts := decode(t, m, "hr/0", payload)
		if len(pts) != 1 || pts[0].Value.String() != c.want {
			t.Errorf("%s = %v, want %s", c.expr, pts, c.want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	cases := []struct {
		src       string
		line, col int
		want      error
		msg       string
	}{
		{"t: hr[0] +", 1, 11, ErrSyntax, "want a number"},
		{"t: hr[0]\nu: hr[1] $ 2", 2, 10, ErrSyntax, "unexpected character"},
		{"t: s16(hr[0]) * 0.1\nhr[0] = t * 10", 2, 9, ErrType, "use round()"},
		{"t: hr[0] / 2 % 3", 1, 14, ErrType, "wants ints"},
		{"t: nope + 1", 1, 4, ErrType, "unknown name"},
		{"t: x\nx: 1", 1, 4, ErrType, "unknown name"},
		{"t: 1\nt: 2", 2, 1, ErrType, "defined twice"},
		{"ir[0] = 1", 1, 1, ErrType, "read-only"},
		{"hr[0] = 1\nhr[0] = 2", 2, 1, ErrType, "already written"},
		{"t: s32(hr[0])", 1, 4, ErrType, "takes 2 register"},
		{"t: s32(hr[0], 5)", 1, 15, ErrType, "wants registers"},
		{"t: hr[0] + ir[0]", 1, 12, ErrType, "mixes"},
		{"t: foo(1)", 1, 4, ErrType, "unknown function"},
		{"t: true + 1", 1, 9, ErrType, "wants numbers"},
		{"t: 1 ? 2 : 3", 1, 4, ErrType, "want bool"},
		{"t: hr[70000]", 1, 7, ErrSyntax, "register address"},
		{"t: xx[1]", 1, 4, ErrSyntax, "not a register table"},
		{"t: 1 unit C", 1, 11, ErrSyntax, "quoted unit"},
		{"t 1", 1, 3, ErrSyntax, "want ':'"},
		{"round(hr[0]) = 1", 1, 1, ErrType, "downlink target"},
		{"hr[0] = hr[1]", 1, 9, ErrType, "not registers"},
		{"coil[0] = 1", 1, 11, ErrType, "takes bool"},
		{"t: \"unterminated", 1, 4, ErrSyntax, "unterminated"},
		{"t: 12abc", 1, 4, ErrSyntax, "bad number"},
		{"# only a comment", 1, 1, ErrSyntax, "empty mapping"},
		{"t: " + strings.Repeat("(", 250) + "1" + strings.Repeat(")", 250), 1, 0, ErrSyntax, "nested deeper"},
		{"t: " + strings.Repeat("1+(", 40) + "1" + strings.Repeat(")", 40), 1, 1, ErrSyntax, "stack deeper"},
	}
	for _, c := range cases {
		_, err := Compile(c.src)
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, c.want) {
			t.Errorf("%q: err = %v, want *Error wrapping %v", c.src, err, c.want)
			continue
		}
		if !strings.Contains(e.Msg, c.msg) || e.Line != c.line || (c.col != 0 && e.Col != c.col) {
			t.Errorf("%q: got %v (line %d col %d), want %d:%d containing %q", c.src, err, e.Line, e.Col, c.line, c.col, c.msg)
		}
	}
	// Several problems are all reported.
	_, err := Compile("a: $\nb: nope\nc: 1 +")
	if n := strings.Count(err.Error(), "\n") + 1; n != 3 {
		t.Fatalf("want 3 errors, got %d: %v", n, err)
	}
}

func TestEvalErrors(t *testing.T) {
	m := compile(t, "q: hr[0] % hr[1]\nr: round(f32(hr[2], hr[3]))\nhr[0] = round(q)\nf32(hr[2], hr[3]) = r * 1.0\ns16(hr[1]) = round(z)")
	err := m.Decode(&gateway.Frame{Topic: "hr/0", Payload: regs(5, 0, 0, 0)}, &gateway.Message{})
	var fe *layout.FieldError
	if !errors.As(err, &fe) || !errors.Is(err, layout.ErrRange) || fe.Field != "q" || fe.Offset != 0 {
		t.Fatalf("division by zero: %v", err)
	}
	nan := math.Float32bits(float32(math.NaN()))
	msg := &gateway.Message{Points: []gateway.Point{{Name: "keep"}}}
	err = m.Decode(&gateway.Frame{Topic: "hr/0", Payload: regs(5, 2, uint16(nan>>16), uint16(nan))}, msg)
	if !errors.As(err, &fe) || fe.Field != "r" || fe.Offset != 4 || len(msg.Points) != 1 {
		t.Fatalf("round(NaN): %v, points %v", err, msg.Points)
	}
	encodeCases := []struct {
		topic string
		pts   []gateway.Point
		field string
		off   int
		want  error
	}{
		{"hr/0", []gateway.Point{{Name: "q", Value: gateway.Int(70000)}}, "hr[0]", 0, layout.ErrRange},
		{"hr/0", []gateway.Point{{Name: "q", Value: gateway.Int(-1)}}, "hr[0]", 0, layout.ErrRange},
		{"hr/1", []gateway.Point{{Name: "z", Value: gateway.Float(40000)}}, "s16(hr[1])", 0, layout.ErrRange},
		{"hr/1", []gateway.Point{{Name: "z", Value: gateway.Float(math.NaN())}}, "s16(hr[1])", 0, layout.ErrRange},
		{"hr/2", []gateway.Point{{Name: "r", Value: gateway.Float(1e300)}}, "f32(hr[2], hr[3])", 0, layout.ErrType},
		{"hr/0", []gateway.Point{{Name: "q", Value: gateway.String("x")}}, "hr[0]", 0, layout.ErrType},
		{"hr/0", []gateway.Point{{Name: "who", Value: gateway.Int(1)}}, "who", -1, layout.ErrUnknownField},
		{"hr/0", []gateway.Point{{Name: "q", Value: gateway.Int(1)}, {Name: "z", Value: gateway.Int(1)}}, "", 0, nil},
		{"hr/0", []gateway.Point{{Name: "q", Value: gateway.Int(1)}, {Name: "r", Value: gateway.Int(1)}}, "hr[1]", 2, layout.ErrMissingField},
		{"ir/0", []gateway.Point{{Name: "q", Value: gateway.Int(1)}}, "topic", -1, gateway.ErrNotSupported},
		{"nonsense", []gateway.Point{{Name: "q", Value: gateway.Int(1)}}, "topic", -1, layout.ErrSyntax},
		{"hr/9", []gateway.Point{{Name: "q", Value: gateway.Int(1)}}, "", -1, layout.ErrMissingField},
	}
	f32 := compile(t, "f32(hr[0], hr[1]) = v")
	if _, err := f32.Encode(&gateway.Message{Topic: "hr/0", Points: []gateway.Point{{Name: "v", Value: gateway.Float(1e300)}}}, nil); !errors.As(err, &fe) || !errors.Is(err, layout.ErrRange) || fe.Field != "f32(hr[0], hr[1])" {
		t.Errorf("f32 overflow: %v", err)
	}
	for _, c := range encodeCases {
		out, err := m.Encode(&gateway.Message{Topic: c.topic, Points: c.pts}, []byte{7})
		if c.want == nil {
			if err != nil {
				t.Errorf("%v: %v", c.pts, err)
			}
			continue
		}
		if !errors.As(err, &fe) || !errors.Is(err, c.want) || fe.Field != c.field || fe.Offset != c.off {
			t.Errorf("%s %v: err = %v, want field %q offset %d wrapping %v", c.topic, c.pts, err, c.field, c.off, c.want)
		}
		if !bytes.Equal(out, []byte{7}) {
			t.Errorf("%v: failed encode changed dst to % x", c.pts, out)
		}
	}
}

const lossless = `
a: s16(hr[0]) * 0.1 unit "C"
b: u32(hr[2], hr[1])
c: f32(hr[3], hr[4])
d: hr[5]
e: s64(hr[6], hr[7], hr[8], hr[9]) * 1
f: f64(hr[10], hr[11], hr[12], hr[13])
g: hr[14] * 0.01
s16(hr[0]) = round(a * 10)
u32(hr[2], hr[1]) = b
f32(hr[3], hr[4]) = c
hr[5] = d
s64(hr[6], hr[7], hr[8], hr[9]) = e
f64(hr[10], hr[11], hr[12], hr[13]) = f
hr[14] = round(g * 100)
`

// TestRoundTripProperty: for a lossless mapping, Encode(Decode(x)) == x
// for random register blocks (NaN floats excepted: they do not encode).
func TestRoundTripProperty(t *testing.T) {
	m := compile(t, lossless)
	rng := rand.New(rand.NewPCG(7, 8))
	b := make([]byte, 30)
	for n := 0; n < 20000; n++ {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		msg := &gateway.Message{Topic: "hr/0"}
		if err := m.Decode(&gateway.Frame{Topic: "hr/0", Payload: b}, msg); err != nil {
			t.Fatal(err)
		}
		out, err := m.Encode(msg, nil)
		if err != nil {
			if errors.Is(err, layout.ErrRange) && hasNaN(msg) {
				continue
			}
			t.Fatalf("% x: %v", b, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip\n got % x\nwant % x\npoints %v", out, b, msg.Points)
		}
	}
}

func hasNaN(m *gateway.Message) bool {
	for _, p := range m.Points {
		if p.Value.Kind() == gateway.KindFloat && (math.IsNaN(p.Value.Float()) || math.IsInf(p.Value.Float(), 0)) {
			return true
		}
	}
	return false
}

func TestDecodeDoesNotAllocate(t *testing.T) {
	m := compile(t, docExample)
	f := &gateway.Frame{Topic: "plc/hr/0", Payload: regs(1, 2, 3, 4, 5, 6, 7)}
	msg := &gateway.Message{Points: make([]gateway.Point, 0, 16)}
	allocs := testing.AllocsPerRun(200, func() {
		msg.Points = msg.Points[:0]
		if err := m.Decode(f, msg); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("decode allocates %v times", allocs)
	}
	buf := make([]byte, 0, 64)
	msg.Topic = "hr/0"
	msg.Points = msg.Points[:4]
	allocs = testing.AllocsPerRun(200, func() {
		if _, err := m.Encode(msg, buf[:0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("encode allocates %v times", allocs)
	}
}

func FuzzCompile(f *testing.F) {
	f.Add(docExample)
	f.Add(lossless)
	f.Add("t: hr[0] > 1 ? (hr[1] << 2) : -hr[2] % 3\nhr[0] = round(t)")
	f.Add("x: clamp(bit(hr[0], 3) ? 1.5 : 2, 0, 1) unit \"\\\"\"")
	f.Fuzz(func(t *testing.T, src string) {
		m, err := Compile(src)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Line < 1 || e.Col < 1 {
				t.Fatalf("error without position: %v", err)
			}
			return
		}
		// Whatever compiles must evaluate without panicking.
		b := make([]byte, 64)
		for i := range b {
			b[i] = byte(i * 37)
		}
		for _, topic := range []string{"hr/0", "ir/0", "coil/0", "di/0", "hr/3"} {
			msg := &gateway.Message{Topic: topic}
			if err := m.Decode(&gateway.Frame{Topic: topic, Payload: b}, msg); err == nil {
				_, _ = m.Encode(msg, nil)
			}
		}
	})
}

func ExampleCompile() {
	m, err := Compile(`
temperature: s16(hr[0]) * 0.1 unit "C"
s16(hr[0]) = round(temperature * 10)
`)
	if err != nil {
		fmt.Println(err)
		return
	}
	msg := &gateway.Message{}
	_ = m.Decode(&gateway.Frame{Topic: "hr/0", Payload: []byte{0xff, 0x38}}, msg)
	fmt.Println(msg.Points)
	out, _ := m.Encode(&gateway.Message{Topic: "hr/0", Points: []gateway.Point{{Name: "temperature", Value: gateway.Float(21.5)}}}, nil)
	fmt.Printf("% x\n", out)
	_, err = Compile("t: hr[0]\nhr[0] = t * 0.5")
	fmt.Println(err)
	// Output:
	// [{temperature -20 C}]
	// 00 d7
	// 2:9: hr[0] takes int, the expression is float: use round(), floor(), ceil() or trunc()
}

// FuzzRoundTrip: for the lossless mapping, any register block that decodes
// encodes back to the same bytes (NaN floats excepted), and nothing
// panics whatever the topic and payload.
func FuzzRoundTrip(f *testing.F) {
	m := compile(f, lossless)
	f.Add("hr/0", make([]byte, 30))
	f.Add("hr/3", []byte{1, 2, 3})
	f.Add("coil/0", []byte{0xff})
	f.Fuzz(func(t *testing.T, topic string, b []byte) {
		msg := &gateway.Message{Topic: topic}
		if err := m.Decode(&gateway.Frame{Topic: topic, Payload: b}, msg); err != nil {
			var fe *layout.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("unpositioned error %v", err)
			}
			return
		}
		out, err := m.Encode(msg, nil)
		if len(msg.Points) != 7 || topic != "hr/0" {
			return // partial blocks need not cover a whole write
		}
		if err != nil {
			if errors.Is(err, layout.ErrRange) && hasNaN(msg) {
				return
			}
			t.Fatalf("% x: %v", b, err)
		}
		if !bytes.Equal(out, b[:30]) {
			t.Fatalf("round trip\n got % x\nwant % x", out, b[:30])
		}
	})
}
