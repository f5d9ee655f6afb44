package modbus

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec/layout"
)

func testMap(t testing.TB) *RegisterMap {
	rm, err := Config{Order: "cdab", Points: []PointConfig{
		{Name: "temperature", Address: 0, Type: "int16", Scale: 0.1, Unit: "C"},
		{Name: "setpoint", Address: 1, Type: "uint16"},
		{Name: "energy", Address: 2, Type: "uint32", Unit: "Wh"},
		{Name: "flow", Address: 4, Type: "float32", Order: "abcd"},
		{Name: "alarm", Address: 6, Type: "bool", Bit: 15},
		{Name: "mode", Address: 6, Type: "bits", Bit: 0, Width: 15},
		{Name: "model", Address: 7, Type: "string", Size: 4},
		{Name: "total", Address: 9, Type: "float64"},
		{Name: "voltage", Table: "ir", Address: 0, Type: "uint16", Scale: 0.01, Unit: "V"},
		{Name: "pump", Table: "coil", Address: 0},
		{Name: "fan", Table: "coil", Address: 3},
		{Name: "door", Table: "di", Address: 9},
	}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	return rm
}

func regs(vs ...uint16) []byte {
	b := make([]byte, 2*len(vs))
	for i, v := range vs {
		b[2*i], b[2*i+1] = byte(v>>8), byte(v)
	}
	return b
}

func TestDecodeBlocks(t *testing.T) {
	rm := testMap(t)
	f32 := math.Float32bits(2.5)
	f64 := math.Float64bits(-1.25)
	cases := []struct {
		topic   string
		payload []byte
		want    string
	}{
		{"hr/0", regs(0xff38, 500, 0x0002, 0x0001, uint16(f32>>16), uint16(f32), 0x8005, 'A'<<8|'B', 'C'<<8, uint16(f64), uint16(f64>>16), uint16(f64>>32), uint16(f64>>48)),
			"[{temperature -20 C} {setpoint 500 } {energy 65538 Wh} {flow 2.5 } {alarm true } {mode 5 } {model ABC } {total -1.25 }]"},
		{"plc1/hr/1", regs(7, 0, 9), "[{setpoint 7 } {energy 589824 Wh}]"},
		{"hr/4", regs(0, 0), "[{flow 0 }]"},
		{"ir/0", regs(23012), "[{voltage 230.12 V}]"},
		{"coil/0", []byte{0b1001}, "[{pump true } {fan true }]"},
		{"coil/1", []byte{0b100}, "[{fan true }]"},
		{"di/8", []byte{0b10}, "[{door true }]"},
		{"hr/20", regs(1, 2), "[]"},
	}
	for _, c := range cases {
		m := &gateway.Message{}
		if err := rm.Decode(&gateway.Frame{Topic: c.topic, Payload: c.payload}, m); err != nil {
			t.Fatalf("%s: %v", c.topic, err)
		}
		if got := fmt.Sprint(m.Points); got != c.want {
			t.Errorf("%s:\n got %s\nwant %s", c.topic, got, c.want)
		}
	}
}

func TestEncodeWrites(t *testing.T) {
	rm := testMap(t)
	cases := []struct {
		topic string
		pts   []gateway.Point
		want  []byte
	}{
		{"hr/0", []gateway.Point{{Name: "temperature", Value: gateway.Float(-20)}, {Name: "setpoint", Value: gateway.Int(500)}}, regs(0xff38, 500)},
		{"hr/1", []gateway.Point{{Name: "setpoint", Value: gateway.Uint(1)}, {Name: "energy", Value: gateway.Uint(65538)}}, regs(1, 2, 1)},
		{"hr/6", []gateway.Point{{Name: "alarm", Value: gateway.Bool(true)}, {Name: "mode", Value: gateway.Uint(5)}}, regs(0x8005)},
		{"coil/0", []gateway.Point{{Name: "pump", Value: gateway.Bool(true)}, {Name: "fan", Value: gateway.Bool(false)}}, nil},
	}
	for _, c := range cases {
		out, err := rm.Encode(&gateway.Message{Topic: c.topic, Points: c.pts}, nil)
		if c.want == nil {
			// coils 1, 2, 4..7 have no point: a whole-byte write would clobber them.
			if !errors.Is(err, layout.ErrMissingField) {
				t.Errorf("%s: err = %v, want ErrMissingField", c.topic, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", c.topic, err)
		}
		if !bytes.Equal(out, c.want) {
			t.Errorf("%s: % x, want % x", c.topic, out, c.want)
		}
	}
	// A full coil byte encodes.
	rm2, err := New([]Point{{Name: "c0", Table: Coils}, {Name: "c1", Table: Coils, Address: 1}, {Name: "c2", Table: Coils, Address: 2},
		{Name: "c3", Table: Coils, Address: 3}, {Name: "c4", Table: Coils, Address: 4}, {Name: "c5", Table: Coils, Address: 5},
		{Name: "c6", Table: Coils, Address: 6}, {Name: "c7", Table: Coils, Address: 7}})
	if err != nil {
		t.Fatal(err)
	}
	var pts []gateway.Point
	for i := 0; i < 8; i++ {
		pts = append(pts, gateway.Point{Name: fmt.Sprintf("c%d", i), Value: gateway.Bool(i%3 == 0)})
	}
	out, err := rm2.Encode(&gateway.Message{Topic: "coil/0", Points: pts}, nil)
	if err != nil || !bytes.Equal(out, []byte{0b01001001}) {
		t.Fatalf("coils: % x %v", out, err)
	}
	m := &gateway.Message{}
	if err := rm2.Decode(&gateway.Frame{Topic: "coil/0", Payload: out}, m); err != nil || fmt.Sprint(m.Points) != fmt.Sprint(pts) {
		t.Fatalf("coil round trip: %v %v", m.Points, err)
	}
}

func TestBadInput(t *testing.T) {
	rm := testMap(t)
	type tc struct {
		name   string
		decode bool
		topic  string
		body   []byte
		pts    []gateway.Point
		field  string
		offset int
		want   error
	}
	cases := []tc{
		{name: "bad topic", decode: true, topic: "holding/0", body: regs(1), field: "topic", offset: -1, want: layout.ErrSyntax},
		{name: "odd length", decode: true, topic: "hr/0", body: []byte{1, 2, 3}, field: "payload", offset: 2, want: layout.ErrShortFrame},
		{name: "split value", decode: true, topic: "hr/0", body: regs(1, 2, 3), field: "energy", offset: 4, want: layout.ErrShortFrame},
		{name: "read-only table", topic: "ir/0", pts: []gateway.Point{{Name: "voltage", Value: gateway.Float(1)}}, field: "topic", offset: -1, want: gateway.ErrNotSupported},
		{name: "unknown point", topic: "hr/0", pts: []gateway.Point{{Name: "nope", Value: gateway.Int(1)}}, field: "nope", offset: -1, want: layout.ErrUnknownField},
		{name: "wrong table", topic: "hr/0", pts: []gateway.Point{{Name: "pump", Value: gateway.Bool(true)}}, field: "pump", offset: -1, want: layout.ErrType},
		{name: "before start", topic: "hr/5", pts: []gateway.Point{{Name: "setpoint", Value: gateway.Int(1)}}, field: "setpoint", offset: -1, want: layout.ErrRange},
		{name: "gap", topic: "hr/0", pts: []gateway.Point{{Name: "temperature", Value: gateway.Float(1)}, {Name: "energy", Value: gateway.Int(1)}}, field: "hr/1", offset: 2, want: layout.ErrMissingField},
		{name: "NaN", topic: "hr/4", pts: []gateway.Point{{Name: "flow", Value: gateway.Float(math.NaN())}}, field: "flow", offset: 0, want: layout.ErrRange},
		{name: "overflow", topic: "hr/1", pts: []gateway.Point{{Name: "setpoint", Value: gateway.Int(70000)}}, field: "setpoint", offset: 0, want: layout.ErrRange},
		{name: "wrong type", topic: "hr/1", pts: []gateway.Point{{Name: "setpoint", Value: gateway.String("x")}}, field: "setpoint", offset: 0, want: layout.ErrType},
		{name: "no points", topic: "hr/1", field: "", offset: -1, want: layout.ErrMissingField},
	}
	for _, c := range cases {
		var err error
		if c.decode {
			err = rm.Decode(&gateway.Frame{Topic: c.topic, Payload: c.body}, &gateway.Message{})
		} else {
			var out []byte
			out, err = rm.Encode(&gateway.Message{Topic: c.topic, Points: c.pts}, []byte{9})
			if !bytes.Equal(out, []byte{9}) {
				t.Errorf("%s: failed encode changed dst to % x", c.name, out)
			}
		}
		var fe *layout.FieldError
		if !errors.As(err, &fe) || !errors.Is(err, c.want) || fe.Field != c.field || fe.Offset != c.offset {
			t.Errorf("%s: err = %v (%+v), want field %q offset %d wrapping %v", c.name, err, fe, c.field, c.offset, c.want)
		}
	}
	for i, ps := range [][]Point{{{Name: "a", Type: layout.Int8}}, {{Name: "a", Table: Coils, Scale: 2}}, {{Name: "a", Address: 65535, Type: layout.Uint32}},
		{{Name: "a"}, {Name: "a", Address: 1}}, {{Name: "", Table: Coils}}, {{Name: "a", Table: 9}}} {
		if _, err := New(ps); err == nil {
			t.Errorf("case %d: New accepted %+v", i, ps)
		}
	}
}

// TestRoundTripProperty: for random register blocks, encoding the decoded
// points to the same block reproduces the registers.
func TestRoundTripProperty(t *testing.T) {
	rm := testMap(t)
	rng := rand.New(rand.NewPCG(5, 6))
	for n := 0; n < 20000; n++ {
		b := make([]byte, 26)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if i := bytes.IndexByte(b[14:18], 0); i >= 0 {
			clear(b[14+i : 18]) // string padding
		}
		m := &gateway.Message{Topic: "hr/0"}
		if err := rm.Decode(&gateway.Frame{Topic: "hr/0", Payload: b}, m); err != nil {
			t.Fatal(err)
		}
		out, err := rm.Encode(m, nil)
		if err != nil {
			if errors.Is(err, layout.ErrRange) && hasNonFinite(m) {
				continue
			}
			t.Fatalf("% x: %v", b, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip\n got % x\nwant % x", out, b)
		}
	}
}

// hasNonFinite reports a point that encoding rejects by design: NaN or an
// infinity read from the device.
func hasNonFinite(m *gateway.Message) bool {
	for _, p := range m.Points {
		if p.Value.Kind() == gateway.KindFloat && (math.IsNaN(p.Value.Float()) || math.IsInf(p.Value.Float(), 0)) {
			return true
		}
	}
	return false
}

func TestParseBlock(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Block
		ok   bool
	}{{"hr/0", Block{HoldingRegisters, 0}, true}, {"a/b/ir/65535", Block{InputRegisters, 65535}, true}, {"coil/7", Block{Coils, 7}, true},
		{"di/1", Block{DiscreteInputs, 1}, true}, {"hr/65536", Block{}, false}, {"hr/-1", Block{}, false}, {"hr", Block{}, false}, {"xx/1", Block{}, false}, {"", Block{}, false}} {
		b, err := ParseBlock(c.in)
		if (err == nil) != c.ok || b != c.want {
			t.Errorf("%q: %v %v", c.in, b, err)
		}
		if c.ok && b.String() != c.in[len(c.in)-len(b.String()):] {
			t.Errorf("%q: String() = %q", c.in, b.String())
		}
	}
}

func FuzzRegisterMap(f *testing.F) {
	rm := testMap(f)
	f.Add("hr/0", make([]byte, 26))
	f.Add("coil/0", []byte{0xff})
	f.Add("ir/0", []byte{1})
	f.Fuzz(func(t *testing.T, topic string, b []byte) {
		m := &gateway.Message{Topic: topic}
		if err := rm.Decode(&gateway.Frame{Topic: topic, Payload: b}, m); err != nil {
			var fe *layout.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("unpositioned error %v", err)
			}
			return
		}
		if _, err := rm.Encode(m, nil); err != nil {
			var fe *layout.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("unpositioned error %v", err)
			}
		}
	})
}

func ExampleRegisterMap() {
	rm, _ := New([]Point{
		{Name: "temperature", Address: 0, Type: layout.Int16, Scale: 0.1, Unit: "C"},
		{Name: "energy", Address: 1, Type: layout.Uint32, Order: layout.WordSwap, Unit: "Wh"},
	})
	m := &gateway.Message{}
	_ = rm.Decode(&gateway.Frame{Topic: "hr/0", Payload: []byte{0x00, 0xd7, 0x00, 0x10, 0x00, 0x01}}, m)
	fmt.Println(m.Points)
	out, _ := rm.Encode(&gateway.Message{Topic: "hr/0", Points: m.Points[:1]}, nil)
	fmt.Printf("% x\n", out)
	// Output:
	// [{temperature 21.5 C} {energy 65552 Wh}]
	// 00 d7
}
