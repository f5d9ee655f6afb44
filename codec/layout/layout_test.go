package layout

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/iotgw/gateway"
)

// wire holds the on-the-wire bytes of the reference values 0x0102,
// 0x01020304 and 0x0102030405060708 in each byte order.
var wire = map[Order]map[int][]byte{
	BigEndian:    {1: {0x81}, 2: {1, 2}, 4: {1, 2, 3, 4}, 8: {1, 2, 3, 4, 5, 6, 7, 8}},
	LittleEndian: {1: {0x81}, 2: {2, 1}, 4: {4, 3, 2, 1}, 8: {8, 7, 6, 5, 4, 3, 2, 1}},
	WordSwap:     {1: {0x81}, 2: {1, 2}, 4: {3, 4, 1, 2}, 8: {7, 8, 5, 6, 3, 4, 1, 2}},
	ByteSwap:     {1: {0x81}, 2: {2, 1}, 4: {2, 1, 4, 3}, 8: {2, 1, 4, 3, 6, 5, 8, 7}},
}

// raw is the reference value of each width, as the type reads it.
func rawValue(t Type) gateway.Value {
	switch t {
	case Int8:
		return gateway.Int(int64(int8(-127))) // 0x81
	case Uint8:
		return gateway.Uint(0x81)
	case Int16:
		return gateway.Int(0x0102)
	case Uint16:
		return gateway.Uint(0x0102)
	case Int32:
		return gateway.Int(0x01020304)
	case Uint32:
		return gateway.Uint(0x01020304)
	case Int64:
		return gateway.Int(0x0102030405060708)
	case Uint64:
		return gateway.Uint(0x0102030405060708)
	case Float32:
		return gateway.Float(float64(math.Float32frombits(0x01020304)))
	case Float64:
		return gateway.Float(math.Float64frombits(0x0102030405060708))
	}
	panic("no reference value for " + t.String())
}

// TestEveryTypeOrderScale decodes and re-encodes the reference value of
// every numeric type in every byte order, unscaled and scaled.
func TestEveryTypeOrderScale(t *testing.T) {
	types := []Type{Int8, Int16, Int32, Int64, Uint8, Uint16, Uint32, Uint64, Float32, Float64}
	scales := []struct{ scale, bias float64 }{{0, 0}, {0.5, 10}, {-2, 0}}
	for _, typ := range types {
		for o := BigEndian; o <= ByteSwap; o++ {
			for _, sc := range scales {
				name := fmt.Sprintf("%s/%s/scale=%v,bias=%v", typ, o, sc.scale, sc.bias)
				t.Run(name, func(t *testing.T) {
					if typ.Size() == 8 && (typ == Int64 || typ == Uint64) && sc.scale != 0 {
						return // not applicable: 64-bit integers with a scale are not exact in float64 (documented)
					}
					if (typ == Float32 || typ == Float64) && sc.bias != 0 {
						// The reference floats are tiny: a bias of 10 absorbs them.
						sc.bias = 0
					}
					l, err := New([]Field{{Name: "v", Type: typ, Offset: 1, Order: o, Scale: sc.scale, Bias: sc.bias, Unit: "u"}}, 0)
					if err != nil {
						t.Fatal(err)
					}
					payload := append([]byte{0xee}, wire[o][typ.Size()]...)
					want := rawValue(typ)
					if sc.scale != 0 {
						want = gateway.Float(want.Float()*sc.scale + sc.bias)
					}
					var m gateway.Message
					if err := l.Decode(&gateway.Frame{Payload: payload}, &m); err != nil {
						t.Fatal(err)
					}
					if len(m.Points) != 1 || m.Points[0].Name != "v" || m.Points[0].Unit != "u" {
						t.Fatalf("points = %+v", m.Points)
					}
					if got := m.Points[0].Value; !got.Equal(want) {
						t.Fatalf("decoded %v (%s), want %v (%s)", got, got.Kind(), want, want.Kind())
					}
					out, err := l.Encode(&m, []byte("prefix"))
					if err != nil {
						t.Fatal(err)
					}
					wantOut := append([]byte("prefix\x00"), wire[o][typ.Size()]...)
					if !bytes.Equal(out, wantOut) {
						t.Fatalf("encoded % x, want % x", out, wantOut)
					}
				})
			}
		}
	}
}

func TestBitsBoolString(t *testing.T) {
	l, err := New([]Field{
		{Name: "alarm", Type: Bool, Offset: 0, Bit: 7},
		{Name: "mode", Type: Bits, Offset: 0, Bit: 2, Width: 3},
		{Name: "wide", Type: Bits, Offset: 1, Bit: 4, Width: 8, Order: LittleEndian},
		{Name: "serial", Type: String, Offset: 3, Size: 6},
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	// byte0 = 1 0 0 1 0 1 0 0: alarm (bit 7) set, mode (bits 2..4) = 0b101.
	// bytes 1,2 little-endian container 0x0AB0 -> bits 4..11 = 0xAB.
	payload := []byte{0x94, 0xB0, 0x0A, 'A', 'B', 'C', 0, 0, 0}
	var m gateway.Message
	if err := l.Decode(&gateway.Frame{Payload: payload}, &m); err != nil {
		t.Fatal(err)
	}
	want := []gateway.Point{
		{Name: "alarm", Value: gateway.Bool(true)},
		{Name: "mode", Value: gateway.Uint(5)},
		{Name: "wide", Value: gateway.Uint(0xAB)},
		{Name: "serial", Value: gateway.String("ABC")},
	}
	for i, p := range want {
		if m.Points[i] != p {
			t.Errorf("point %d = %+v, want %+v", i, m.Points[i], p)
		}
	}
	out, err := l.Encode(&m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, payload) {
		t.Fatalf("encoded % x, want % x", out, payload)
	}
}

func TestBadInput(t *testing.T) {
	l, err := New([]Field{
		{Name: "t", Type: Int16, Offset: 0, Scale: 0.1},
		{Name: "f", Type: Float32, Offset: 2},
		{Name: "u", Type: Uint8, Offset: 6},
		{Name: "s", Type: String, Offset: 7, Size: 2},
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		pts     []gateway.Point
		payload []byte // decode case when non-nil
		field   string
		offset  int
		want    error
	}{
		{name: "short frame", payload: []byte{1, 2, 3, 4}, field: "f", offset: 2, want: ErrShortFrame},
		{name: "empty frame", payload: []byte{}, field: "t", offset: 0, want: ErrShortFrame},
		{name: "NaN", pts: pts(gateway.Float(math.NaN()), gateway.Float(1), gateway.Uint(1), gateway.String("a")), field: "t", offset: 0, want: ErrRange},
		{name: "scaled overflow", pts: pts(gateway.Float(4000), gateway.Float(1), gateway.Uint(1), gateway.String("a")), field: "t", offset: 0, want: ErrRange},
		{name: "float32 overflow", pts: pts(gateway.Float(1), gateway.Float(1e300), gateway.Uint(1), gateway.String("a")), field: "f", offset: 2, want: ErrRange},
		{name: "float infinity", pts: pts(gateway.Float(1), gateway.Float(math.Inf(1)), gateway.Uint(1), gateway.String("a")), field: "f", offset: 2, want: ErrRange},
		{name: "uint8 overflow", pts: pts(gateway.Float(1), gateway.Float(1), gateway.Uint(256), gateway.String("a")), field: "u", offset: 6, want: ErrRange},
		{name: "negative into uint", pts: pts(gateway.Float(1), gateway.Float(1), gateway.Int(-1), gateway.String("a")), field: "u", offset: 6, want: ErrRange},
		{name: "fraction into int", pts: pts(gateway.Float(1), gateway.Float(1), gateway.Float(1.5), gateway.String("a")), field: "u", offset: 6, want: ErrType},
		{name: "wrong type", pts: pts(gateway.String("hot"), gateway.Float(1), gateway.Uint(1), gateway.String("a")), field: "t", offset: 0, want: ErrType},
		{name: "number into string", pts: pts(gateway.Float(1), gateway.Float(1), gateway.Uint(1), gateway.Int(3)), field: "s", offset: 7, want: ErrType},
		{name: "string too long", pts: pts(gateway.Float(1), gateway.Float(1), gateway.Uint(1), gateway.String("abc")), field: "s", offset: 7, want: ErrRange},
		{name: "unknown field", pts: append(pts(gateway.Float(1), gateway.Float(1), gateway.Uint(1), gateway.String("a")), gateway.Point{Name: "x"}), field: "x", offset: -1, want: ErrUnknownField},
		{name: "missing field", pts: pts(gateway.Float(1), gateway.Float(1), gateway.Uint(1))[:3], field: "s", offset: 7, want: ErrMissingField},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.payload != nil {
				err = l.Decode(&gateway.Frame{Payload: c.payload}, &gateway.Message{})
			} else {
				var out []byte
				out, err = l.Encode(&gateway.Message{Points: c.pts}, []byte("keep"))
				if string(out) != "keep" {
					t.Errorf("failed encode left %q in dst", out)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want a FieldError wrapping %v", err, c.want)
			}
			if fe.Field != c.field || fe.Offset != c.offset {
				t.Fatalf("error names field %q offset %d, want %q offset %d (%v)", fe.Field, fe.Offset, c.field, c.offset, err)
			}
		})
	}
}

func pts(vs ...gateway.Value) []gateway.Point {
	names := []string{"t", "f", "u", "s"}
	out := make([]gateway.Point, len(vs))
	for i, v := range vs {
		out[i] = gateway.Point{Name: names[i], Value: v}
	}
	return out
}

func TestBadFields(t *testing.T) {
	bad := [][]Field{
		{{Name: "", Type: Int16}},
		{{Name: "a", Type: Int16, Offset: -1}},
		{{Name: "a", Type: Int16}, {Name: "a", Type: Int8}},
		{{Name: "a", Type: String}},
		{{Name: "a", Type: Bits, Bit: 60, Width: 8}},
		{{Name: "a", Type: Bool, Width: 2}},
		{{Name: "a", Type: Int16, Size: 4}},
		{{Name: "a", Type: Type(99)}},
		{{Name: "a", Type: Int16, Scale: math.NaN()}},
		{{Name: "a", Type: Int16, Bit: 3}},
	}
	for i, fs := range bad {
		if _, err := New(fs, 0); err == nil {
			t.Errorf("case %d: New accepted %+v", i, fs)
		}
	}
}

func TestConfig(t *testing.T) {
	l, err := Config{Order: "cdab", Fields: []FieldConfig{
		{Name: "e", Type: "uint32", Offset: 0},
		{Name: "t", Type: "s16", Offset: 4, Order: "abcd", Scale: 0.5},
	}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	fs := l.Fields()
	if fs[0].Order != WordSwap || fs[1].Order != BigEndian || fs[1].Type != Int16 || l.Size() != 6 {
		t.Fatalf("fields = %+v size %d", fs, l.Size())
	}
	for _, c := range []Config{{Order: "zyx", Fields: []FieldConfig{{Name: "a", Type: "int8"}}}, {}, {Fields: []FieldConfig{{Name: "a", Type: "int7"}}}} {
		if _, err := c.Build(); err == nil {
			t.Errorf("Build accepted %+v", c)
		}
	}
}

// propertyLayout covers every byte of a 40-byte frame.
func propertyLayout(t testing.TB) *Layout {
	l, err := New([]Field{
		{Name: "a", Type: Int8, Offset: 0},
		{Name: "b", Type: Uint8, Offset: 1},
		{Name: "c", Type: Int16, Offset: 2, Order: LittleEndian, Scale: 0.1},
		{Name: "d", Type: Uint16, Offset: 4, Scale: 2, Bias: -5},
		{Name: "e", Type: Int32, Offset: 6, Order: WordSwap},
		{Name: "f", Type: Uint32, Offset: 10, Order: ByteSwap, Scale: 0.01},
		{Name: "g", Type: Int64, Offset: 14, Order: LittleEndian},
		{Name: "h", Type: Float32, Offset: 22, Order: WordSwap},
		{Name: "i", Type: Float64, Offset: 26, Order: ByteSwap},
		{Name: "j", Type: Bool, Offset: 34, Bit: 0},
		{Name: "k", Type: Bits, Offset: 34, Bit: 1, Width: 7},
		{Name: "s", Type: String, Offset: 35, Size: 4},
		{Name: "u", Type: Uint8, Offset: 39},
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestRoundTripProperty: for random frames, Encode(Decode(b)) == b.
func TestRoundTripProperty(t *testing.T) {
	l := propertyLayout(t)
	rng := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, l.Size())
	for n := 0; n < 20000; n++ {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		// Strings stop at the first NUL: pad the tail with NULs after it
		// so the frame is one the codec can reproduce.
		if i := bytes.IndexByte(b[35:39], 0); i >= 0 {
			clear(b[35+i : 39])
		}
		var m gateway.Message
		if err := l.Decode(&gateway.Frame{Payload: b}, &m); err != nil {
			t.Fatal(err)
		}
		if hasNonFinite(&m) {
			continue // NaN does not encode, by design
		}
		out, err := l.Encode(&m, nil)
		if err != nil {
			t.Fatalf("frame % x: %v", b, err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip\n got % x\nwant % x", out, b)
		}
	}
}

// hasNonFinite reports a point that encoding rejects by design: NaN or an
// infinity (a device may send either; neither can be written back).
func hasNonFinite(m *gateway.Message) bool {
	for _, p := range m.Points {
		if p.Value.Kind() == gateway.KindFloat && (math.IsNaN(p.Value.Float()) || math.IsInf(p.Value.Float(), 0)) {
			return true
		}
	}
	return false
}

func FuzzLayout(f *testing.F) {
	l := propertyLayout(f)
	f.Add(make([]byte, 40))
	f.Add([]byte{1, 2, 3})
	f.Add(bytes.Repeat([]byte{0xff}, 40))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m gateway.Message
		if err := l.Decode(&gateway.Frame{Payload: b}, &m); err != nil {
			if !errors.Is(err, ErrShortFrame) || len(b) >= l.Size() {
				t.Fatalf("unexpected error %v for %d bytes", err, len(b))
			}
			return
		}
		out, err := l.Encode(&m, nil)
		if err != nil {
			if !hasNonFinite(&m) {
				t.Fatalf("encode of decoded frame: %v", err)
			}
			return
		}
		var m2 gateway.Message
		if err := l.Decode(&gateway.Frame{Payload: out}, &m2); err != nil {
			t.Fatal(err)
		}
		for i := range m.Points {
			if m.Points[i] != m2.Points[i] {
				t.Fatalf("point %s: %v then %v", m.Points[i].Name, m.Points[i].Value, m2.Points[i].Value)
			}
		}
	})
}

func ExampleLayout() {
	l, _ := New([]Field{
		{Name: "temperature", Type: Int16, Offset: 0, Scale: 0.1, Unit: "C"},
		{Name: "energy", Type: Uint32, Offset: 2, Order: WordSwap, Unit: "Wh"},
	}, 0)
	var m gateway.Message
	_ = l.Decode(&gateway.Frame{Payload: []byte{0x00, 0xd7, 0x00, 0x10, 0x00, 0x01}}, &m)
	for _, p := range m.Points {
		fmt.Println(p.Name, p.Value, p.Unit)
	}
	// Output:
	// temperature 21.5 C
	// energy 65552 Wh
}

// TestBitFieldOrders reads the same 12-bit field from a 4-byte container
// in each byte order: the container is assembled in the order first, then
// bits are counted from its least significant bit.
func TestBitFieldOrders(t *testing.T) {
	// Container value 0x01020304; bits 8..19 = 0x203.
	for o := BigEndian; o <= ByteSwap; o++ {
		l, err := New([]Field{{Name: "b", Type: Bits, Bit: 8, Width: 12, Size: 4, Order: o}, {Name: "f", Type: Bool, Bit: 0, Size: 4, Order: o}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		m := &gateway.Message{}
		if err := l.Decode(&gateway.Frame{Payload: wire[o][4]}, m); err != nil {
			t.Fatal(err)
		}
		if m.Points[0].Value != gateway.Uint(0x203) || m.Points[1].Value != gateway.Bool(false) {
			t.Errorf("%s: %v", o, m.Points)
		}
		out, err := l.Encode(m, nil)
		// Bits outside both fields (0x04 low byte's bits 1..7, the top 4 bits) are zero on encode.
		want := make([]byte, 4)
		store(want, 4, o, 0x00020300)
		if err != nil || !bytes.Equal(out, want) {
			t.Errorf("%s: encoded % x, want % x (%v)", o, out, want, err)
		}
	}
}
