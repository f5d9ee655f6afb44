package codec

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

func decodeJSON(t testing.TB, c *JSON, payload string) (*gateway.Message, error) {
	t.Helper()
	m := &gateway.Message{}
	err := c.Decode(&gateway.Frame{Payload: []byte(payload)}, m)
	return m, err
}

func TestJSONDecode(t *testing.T) {
	c := NewJSON(JSONConfig{Units: map[string]string{"t": "C"}, TimeField: "ts"})
	cases := []struct {
		in   string
		want []gateway.Point
	}{
		{`{"t":21.5,"n":-3,"big":18446744073709551615,"ok":true,"off":false,"s":"a\"b\u00e9\ud83d\ude00","skip":null}`, []gateway.Point{
			{Name: "t", Value: gateway.Float(21.5), Unit: "C"},
			{Name: "n", Value: gateway.Int(-3)},
			{Name: "big", Value: gateway.Uint(math.MaxUint64)},
			{Name: "ok", Value: gateway.Bool(true)},
			{Name: "off", Value: gateway.Bool(false)},
			{Name: "s", Value: gateway.String("a\"b\u00e9\U0001F600")},
		}},
		{` { "door" : { "open" : true , "angle" : 1e1 } , "x" : -0.5 } `, []gateway.Point{
			{Name: "door.open", Value: gateway.Bool(true)},
			{Name: "door.angle", Value: gateway.Float(10)},
			{Name: "x", Value: gateway.Float(-0.5)},
		}},
		{`[{"name":"t","value":1},{"value":"on","name":"mode","unit":"-"},{"name":"z","value":null}]`, []gateway.Point{
			{Name: "t", Value: gateway.Int(1), Unit: "C"},
			{Name: "mode", Value: gateway.String("on"), Unit: "-"},
		}},
		{`{"min":-9223372036854775808,"over":1e400e}`, nil}, // error case checked below
		{`{}`, nil},
		{`[]`, nil},
	}
	for _, cs := range cases[:3] {
		m, err := decodeJSON(t, c, cs.in)
		if err != nil {
			t.Fatalf("%s: %v", cs.in, err)
		}
		if fmt.Sprint(m.Points) != fmt.Sprint(cs.want) {
			t.Fatalf("%s:\n got %v\nwant %v", cs.in, m.Points, cs.want)
		}
	}
	for _, in := range []string{`{}`, `[]`} {
		if m, err := decodeJSON(t, c, in); err != nil || len(m.Points) != 0 {
			t.Fatalf("%s: %v %v", in, m.Points, err)
		}
	}
	m, err := decodeJSON(t, c, `{"min":-9223372036854775808}`)
	if err != nil || m.Points[0].Value != gateway.Int(math.MinInt64) {
		t.Fatalf("min int: %v %v", m.Points, err)
	}
	m, err = decodeJSON(t, c, `{"ts":1700000000.25,"t":1}`)
	if err != nil || !m.Time.Equal(time.Unix(1700000000, 250000000)) || len(m.Points) != 1 {
		t.Fatalf("time field: %v %v %v", m.Time, m.Points, err)
	}
	m, err = decodeJSON(t, c, `{"ts":"2024-05-01T10:00:00Z"}`)
	if err != nil || !m.Time.Equal(time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("time string: %v %v", m.Time, err)
	}
}

func TestJSONBadInput(t *testing.T) {
	c := NewJSON(JSONConfig{TimeField: "ts"})
	cases := []struct {
		in     string
		field  string
		offset int
		want   error
	}{
		{``, "", 0, ErrSyntax},
		{`42`, "", 0, ErrSyntax},
		{`{"a":1`, "", 6, ErrSyntax},
		{`{"a":1}x`, "", 7, ErrSyntax},
		{`{"a":[1]}`, "a", 5, ErrType},
		{`{"a":{"":1}}`, "a", 6, ErrMissingField},
		{`{"a":01}`, "a", 5, ErrSyntax},
		{`{"a":1.}`, "a", 5, ErrSyntax},
		{`{"a":1e}`, "a", 5, ErrSyntax},
		{`{"a":1e999}`, "a", 5, ErrRange},
		{`{"a":tru}`, "a", 5, ErrSyntax},
		{`{"a":"x`, "a", 5, ErrSyntax},
		{`{"a":"\q"}`, "a", 7, ErrSyntax},
		{"{\"a\":\"\xff\"}", "a", 5, ErrSyntax},
		{`{"a" 1}`, "a", 5, ErrSyntax},
		{`{"ts":true}`, "ts", 6, ErrType},
		{`{"ts":"yesterday"}`, "ts", 6, ErrType},
		{`[{"name":"a","valu":1}]`, "valu", 20, ErrUnknownField},
		{`[{"value":1}]`, "", 1, ErrMissingField},
		{`[{"name":"a","value":{}}]`, "value", 21, ErrType},
		{`[{"name":"a" "value":1}]`, "name", 13, ErrSyntax},
		{`{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":{"l":{"m":{"n":{"o":{"p":{"q":1}}}}}}}}}}}}}}}}}`, "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p", 80, ErrRange},
	}
	for _, cs := range cases {
		m := &gateway.Message{Points: []gateway.Point{{Name: "kept"}}}
		err := c.Decode(&gateway.Frame{Payload: []byte(cs.in)}, m)
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, cs.want) {
			t.Errorf("%s: err = %v, want FieldError wrapping %v", cs.in, err, cs.want)
			continue
		}
		if fe.Field != cs.field || fe.Offset != cs.offset {
			t.Errorf("%s: error names %q at %d, want %q at %d (%v)", cs.in, fe.Field, fe.Offset, cs.field, cs.offset, err)
		}
		if len(m.Points) != 1 || m.Points[0].Name != "kept" {
			t.Errorf("%s: failed decode left points %v", cs.in, m.Points)
		}
	}
	// Encode errors.
	bad := []gateway.Point{
		{Name: "nan", Value: gateway.Float(math.NaN())},
		{Name: "inf", Value: gateway.Float(math.Inf(-1))},
		{Name: "bin", Value: gateway.Bytes([]byte{0xff, 0xfe})},
	}
	for _, p := range bad {
		out, err := c.Encode(&gateway.Message{Points: []gateway.Point{p}}, []byte("x"))
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != p.Name || string(out) != "x" {
			t.Errorf("encode %s: out %q err %v", p.Name, out, err)
		}
	}
}

func TestJSONEncodeForms(t *testing.T) {
	m := &gateway.Message{Time: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC), Points: []gateway.Point{
		{Name: "t", Value: gateway.Float(21), Unit: "C"},
		{Name: "q\"\n", Value: gateway.String("tab\there\x01")},
		{Name: "n", Value: gateway.Uint(7)},
	}}
	obj, err := NewJSON(JSONConfig{TimeField: "ts"}).Encode(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"ts":"2024-05-01T10:00:00Z","t":21.0,"q\"\n":"tab\there\u0001","n":7}`; string(obj) != want {
		t.Fatalf("object form\n got %s\nwant %s", obj, want)
	}
	arr, err := NewJSON(JSONConfig{Form: JSONArray}).Encode(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"name":"t","value":21.0,"unit":"C"},{"name":"q\"\n","value":"tab\there\u0001"},{"name":"n","value":7}]`; string(arr) != want {
		t.Fatalf("array form\n got %s\nwant %s", arr, want)
	}
	// Both forms are valid JSON by the standard library's reading.
	if !json.Valid(obj) || !json.Valid(arr) {
		t.Fatal("encoder produced invalid JSON")
	}
}

func randomPoints(rng *rand.Rand, n int) []gateway.Point {
	pts := make([]gateway.Point, n)
	for i := range pts {
		name := fmt.Sprintf("p%d_%c", i, 'a'+rune(rng.IntN(26)))
		var v gateway.Value
		switch rng.IntN(5) {
		case 0:
			v = gateway.Int(int64(rng.Uint64()))
		case 1:
			v = gateway.Uint(rng.Uint64() | 1<<63)
		case 2:
			v = gateway.Float(math.Float64frombits(rng.Uint64()))
			if math.IsNaN(v.Float()) || math.IsInf(v.Float(), 0) {
				v = gateway.Float(rng.NormFloat64() * 1e6)
			}
		case 3:
			v = gateway.Bool(rng.IntN(2) == 0)
		case 4:
			var b strings.Builder
			for j := rng.IntN(12); j > 0; j-- {
				rs := []rune("aZ\"\\\n\t\x01é😀/")
				b.WriteRune(rs[rng.IntN(len(rs))])
			}
			v = gateway.String(b.String())
		}
		pts[i] = gateway.Point{Name: name, Value: v}
	}
	return pts
}

// TestJSONRoundTripProperty: Decode(Encode(m)) == m for random points in
// both forms, and Encode(Decode(x)) == x for the canonical encodings.
func TestJSONRoundTripProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, form := range []JSONForm{JSONObject, JSONArray} {
		c := NewJSON(JSONConfig{Form: form})
		for n := 0; n < 3000; n++ {
			m := &gateway.Message{Points: randomPoints(rng, rng.IntN(8))}
			enc, err := c.Encode(m, nil)
			if err != nil {
				t.Fatal(err)
			}
			back, err := decodeJSON(t, c, string(enc))
			if err != nil {
				t.Fatalf("%s: %v", enc, err)
			}
			if fmt.Sprint(back.Points) != fmt.Sprint(m.Points) {
				t.Fatalf("round trip of %s\n got %v\nwant %v", enc, back.Points, m.Points)
			}
			for i := range m.Points {
				if back.Points[i].Value.Kind() != m.Points[i].Value.Kind() {
					t.Fatalf("kind of %s changed: %s -> %s", m.Points[i].Name, m.Points[i].Value.Kind(), back.Points[i].Value.Kind())
				}
			}
			again, err := c.Encode(back, nil)
			if err != nil || string(again) != string(enc) {
				t.Fatalf("Encode(Decode(x)) != x\n x: %s\n y: %s (%v)", enc, again, err)
			}
		}
	}
}

func TestJSONDecodeDoesNotAllocate(t *testing.T) {
	c := NewJSON(JSONConfig{})
	f := &gateway.Frame{Payload: []byte(`{"temperature":21.5,"humidity":40,"door":{"open":false},"mode":"auto","esc":"a\nb"}`)}
	m := &gateway.Message{Points: make([]gateway.Point, 0, 8)}
	_ = c.Decode(f, m) // warm the intern table
	allocs := testing.AllocsPerRun(200, func() {
		m.Points = m.Points[:0]
		if err := c.Decode(f, m); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("steady-state decode allocates %v times per frame", allocs)
	}
}

func FuzzJSON(f *testing.F) {
	f.Add([]byte(`{"t":21.5,"d":{"open":true},"s":"x\u00e9"}`))
	f.Add([]byte(`[{"name":"t","value":1,"unit":"C"}]`))
	f.Add([]byte(`{"a":-0.0e-3,"b":null}`))
	f.Add([]byte(`[`))
	c := NewJSON(JSONConfig{TimeField: "ts"})
	arr := NewJSON(JSONConfig{Form: JSONArray})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := &gateway.Message{}
		if err := c.Decode(&gateway.Frame{Payload: b}, m); err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Offset < 0 || fe.Offset > len(b) {
				t.Fatalf("error %v is not a positioned FieldError", err)
			}
			return
		}
		if !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		for _, cd := range []*JSON{c, arr} {
			enc, err := cd.Encode(m, nil)
			if err != nil {
				t.Fatalf("encode of decoded %q: %v", b, err)
			}
			back := &gateway.Message{}
			if err := cd.Decode(&gateway.Frame{Payload: enc}, back); err != nil {
				t.Fatalf("re-decode of %q: %v", enc, err)
			}
			if len(back.Points) != len(m.Points) {
				t.Fatalf("round trip of %q via %q: %d points, want %d", b, enc, len(back.Points), len(m.Points))
			}
			for i, p := range m.Points {
				q := back.Points[i]
				if cd == c {
					q.Unit = p.Unit // the object form carries no units
				}
				if q != p && !(p.Value.Kind() == gateway.KindFloat && q.Name == p.Name && q.Value.Float() == p.Value.Float()) {
					t.Fatalf("round trip of %q via %q: point %d = %+v, want %+v", b, enc, i, q, p)
				}
			}
		}
	})
}
