package gateway

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"
)

func sampleMessage() *Message {
	m := &Message{
		ID: NewIDGenerator().Next(), Device: "plc-1", Topic: "hr/0", Connector: "modbus",
		Time: time.Unix(1700000000, 123456789), Priority: PriorityHigh, QoS: 1,
		Tags: Tags{{"site", "A"}, {"line", "3"}},
	}
	m.AddPoint("temperature", Float(21.5), "C")
	m.AddPoint("count", Int(-42), "")
	m.AddPoint("serial", Uint(math.MaxUint64), "")
	m.AddPoint("running", Bool(true), "")
	m.AddPoint("label", String("pump ☃"), "")
	m.AddPoint("blob", Bytes([]byte{0, 1, 2, 255}), "")
	m.AddPoint("nothing", Value{}, "")
	m.AddPoint("nan", Float(math.NaN()), "")
	return m
}

func TestMessageBinaryRoundTrip(t *testing.T) {
	m := sampleMessage()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Message
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := got.MarshalBinary()
	if !bytes.Equal(b, b2) {
		t.Fatal("re-encoding differs")
	}
	if got.ID != m.ID || got.Device != m.Device || !got.Time.Equal(m.Time) || got.Priority != m.Priority || len(got.Points) != len(m.Points) {
		t.Fatalf("round trip lost fields: %+v", got)
	}
	for i := range m.Points {
		a, b := m.Points[i], got.Points[i]
		if a.Name != b.Name || a.Unit != b.Unit || a.Value.bits != b.Value.bits || a.Value.kind != b.Value.kind || a.Value.str != b.Value.str {
			t.Fatalf("point %d: %+v != %+v", i, a, b)
		}
	}
}

func TestMessageBinaryErrorsNameFieldAndOffset(t *testing.T) {
	b, _ := sampleMessage().MarshalBinary()
	for cut := 0; cut < len(b); cut++ {
		var m Message
		err := m.UnmarshalBinary(b[:cut])
		if err == nil {
			t.Fatalf("truncated at %d accepted", cut)
		}
		if !strings.Contains(err.Error(), "at offset") {
			t.Fatalf("error %q does not name the offset", err)
		}
	}
	bad := append([]byte{9}, b[1:]...)
	var m Message
	if err := m.UnmarshalBinary(bad); err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("bad version: %v", err)
	}
}

func FuzzMessageUnmarshalBinary(f *testing.F) {
	b, _ := sampleMessage().MarshalBinary()
	f.Add(b)
	f.Add([]byte{1})
	f.Add([]byte{})
	tm := sampleMessage()
	tm.Trace, _ = ParseTraceHeaders("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "a=b")
	b2, _ := tm.MarshalBinary()
	f.Add(b2)
	f.Fuzz(func(t *testing.T, data []byte) {
		var m Message
		if err := m.UnmarshalBinary(data); err != nil {
			return
		}
		// Whatever decodes must re-encode to the same bytes.
		out, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded message does not encode: %v", err)
		}
		var m2 Message
		if err := m2.UnmarshalBinary(out); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		out2, _ := m2.MarshalBinary()
		if !bytes.Equal(out, out2) {
			t.Fatal("encoding not stable")
		}
	})
}

func TestValueConversions(t *testing.T) {
	cases := []struct {
		v    Value
		kind Kind
		f    float64
		i    int64
		b    bool
		text string
	}{
		{Float(2.5), KindFloat, 2.5, 2, true, "2.5"},
		{Int(-3), KindInt, -3, -3, true, "-3"},
		{Uint(7), KindUint, 7, 7, true, "7"},
		{Bool(false), KindBool, 0, 0, false, "false"},
		{String("x"), KindString, 0, 0, true, "x"},
		{Value{}, KindNone, 0, 0, false, ""},
	}
	for _, c := range cases {
		if c.v.Kind() != c.kind || c.v.Float() != c.f || c.v.Int() != c.i || c.v.Bool() != c.b || c.v.String() != c.text {
			t.Errorf("%v: kind=%v float=%v int=%v bool=%v text=%q", c.kind, c.v.Kind(), c.v.Float(), c.v.Int(), c.v.Bool(), c.v.String())
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Float(1).Float() + Int(2).Float() }); n != 0 {
		t.Errorf("numeric values allocate: %v", n)
	}
}

func TestTags(t *testing.T) {
	var tg Tags
	tg = tg.Set("a", "1").Set("b", "2").Set("a", "3")
	if v, _ := tg.Get("a"); v != "3" || len(tg) != 2 {
		t.Fatalf("tags %v", tg)
	}
	tg = tg.Delete("a")
	if _, ok := tg.Get("a"); ok || len(tg) != 1 {
		t.Fatalf("after delete %v", tg)
	}
}

func TestIDGeneratorUniqueAndParsable(t *testing.T) {
	g1, g2 := NewIDGenerator(), NewIDGenerator()
	seen := map[MessageID]bool{}
	for i := 0; i < 10000; i++ {
		for _, id := range []MessageID{g1.Next(), g2.Next()} {
			if seen[id] {
				t.Fatalf("duplicate id %v", id)
			}
			seen[id] = true
			if id[6]>>4 != 7 || id[8]>>6 != 2 {
				t.Fatalf("id %v lacks UUIDv7 version/variant bits", id)
			}
			back, err := ParseMessageID(id.String())
			if err != nil || back != id {
				t.Fatalf("parse %v: %v %v", id, back, err)
			}
		}
	}
	if _, err := ParseMessageID("xyz"); err == nil {
		t.Fatal("bad id parsed")
	}
}
