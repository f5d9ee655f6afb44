package opcua

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/gopcua/opcua/ua"
	"github.com/iotgw/gateway"
)

func TestParseBrowsePath(t *testing.T) {
	tests := []struct {
		in   string
		want string // ns:name joined by |
		err  bool
	}{
		{"2:Demo/2:Temperature", "2:Demo|2:Temperature", false},
		{"/Objects/1:Demo/Server", "1:Demo|0:Server", false},
		{`2:a\/b/3:c\:d`, "2:a/b|3:c:d", false},
		{"Server/ServerStatus/State", "0:Server|0:ServerStatus|0:State", false},
		{"2:x:y", "2:x:y", false}, // a second colon belongs to the name
		{"", "", true},
		{"a//b", "", true},
		{"a/", "", true},
		{"70000:a", "", true},
		{"x:a", "", true},
		{`a\`, "", true},
	}
	for _, tt := range tests {
		qs, err := ParseBrowsePath(tt.in)
		if tt.err {
			if !errors.Is(err, ErrNodeSpec) {
				t.Errorf("%q: err = %v, want ErrNodeSpec", tt.in, err)
			}
			continue
		}
		var parts []string
		for _, q := range qs {
			parts = append(parts, itoa(q.NamespaceIndex)+":"+q.Name)
		}
		if err != nil || strings.Join(parts, "|") != tt.want {
			t.Errorf("%q = %v, %v; want %s", tt.in, parts, err, tt.want)
		}
	}
}

func TestParseNodeID(t *testing.T) {
	for _, ok := range []string{"i=2258", "ns=2;s=Demo.Temperature", "ns=1;g=5ce9dbce-5d79-434c-9ac3-1cfba9a6e92c", "ns=1;b=aGVsbG8="} {
		if _, err := ParseNodeID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", " i=1", "ns=x;s=a", "q=1", "ns=70000;i=1"} {
		if _, err := ParseNodeID(bad); !errors.Is(err, ErrNodeSpec) {
			t.Errorf("%q: err = %v, want ErrNodeSpec", bad, err)
		}
	}
}

// FuzzNodeSpec: the node id and browse path parsers never panic, and an
// accepted browse path formats back to segments that parse the same.
func FuzzNodeSpec(f *testing.F) {
	for _, s := range []string{"i=2258", "ns=2;s=Demo.T", "2:Demo/2:T", `2:a\/b`, "/Objects/x", "ns=1;g=5ce9dbce-5d79-434c-9ac3-1cfba9a6e92c", "ns=1;b=aGVsbG8="} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseNodeID(s); err == nil && n == nil {
			t.Fatal("nil node id without error")
		}
		qs, err := ParseBrowsePath(s)
		if err != nil {
			return
		}
		var b strings.Builder
		for i, q := range qs {
			if q.Name == "" {
				t.Fatalf("%q: empty segment accepted", s)
			}
			if i > 0 {
				b.WriteByte('/')
			}
			b.WriteString(itoa(q.NamespaceIndex) + ":" + strings.NewReplacer(`\`, `\\`, "/", `\/`, ":", `\:`).Replace(q.Name))
		}
		again, err := ParseBrowsePath(b.String())
		if err != nil || len(again) != len(qs) {
			t.Fatalf("%q -> %q: %v", s, b.String(), err)
		}
		for i := range qs {
			if *again[i] != *qs[i] {
				t.Fatalf("%q -> %q: segment %d %v != %v", s, b.String(), i, again[i], qs[i])
			}
		}
	})
}

func itoa(n uint16) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func TestPayloadRoundTrip(t *testing.T) {
	src := time.Date(2025, 5, 6, 7, 8, 9, 123456789, time.UTC)
	srv := src.Add(time.Millisecond)
	tests := []struct {
		v    any
		want string
		kind gateway.Kind
	}{
		{true, "true", gateway.KindBool},
		{int8(-8), "-8", gateway.KindInt},
		{uint8(200), "200", gateway.KindUint},
		{int16(-1600), "-1600", gateway.KindInt},
		{uint16(60000), "60000", gateway.KindUint},
		{int32(math.MinInt32), "-2147483648", gateway.KindInt},
		{uint32(math.MaxUint32), "4294967295", gateway.KindUint},
		{int64(math.MinInt64), "-9223372036854775808", gateway.KindInt},
		{uint64(math.MaxUint64), "18446744073709551615", gateway.KindUint},
		{float32(1.5), "1.5", gateway.KindFloat},
		{2.25, "2.25", gateway.KindFloat},
		{"héllo", "héllo", gateway.KindString},
		{src, "2025-05-06T07:08:09.123456789Z", gateway.KindString},
		{[]byte{0, 0xff}, "\x00\xff", gateway.KindBytes},
	}
	for _, tt := range tests {
		dv := &ua.DataValue{Value: ua.MustVariant(tt.v), Status: ua.StatusUncertain, SourceTimestamp: src, ServerTimestamp: srv}
		p, err := AppendDataValue(nil, dv)
		if err != nil {
			t.Fatalf("%T: %v", tt.v, err)
		}
		m := &gateway.Message{}
		if err := (Codec{}).Decode(&gateway.Frame{Topic: "a/b/x", Payload: p}, m); err != nil {
			t.Fatalf("%T: decode: %v", tt.v, err)
		}
		if len(m.Points) != 1 || m.Points[0].Name != "x" || m.Points[0].Value.String() != tt.want || m.Points[0].Value.Kind() != tt.kind {
			t.Errorf("%T: points %+v, want x = %s (%s)", tt.v, m.Points, tt.want, tt.kind)
		}
		if q, _ := m.Tags.Get("quality"); q != "uncertain" || !m.Time.Equal(src) {
			t.Errorf("%T: quality %q time %v", tt.v, q, m.Time)
		}
		if st, _ := m.Tags.Get("server_time"); st != srv.Format(time.RFC3339Nano) {
			t.Errorf("%T: server_time %q", tt.v, st)
		}
	}
	// Arrays become indexed points.
	p, err := AppendDataValue(nil, &ua.DataValue{Value: ua.MustVariant([]int32{4, 5, 6})})
	if err != nil {
		t.Fatal(err)
	}
	m := &gateway.Message{}
	if err := (Codec{}).Decode(&gateway.Frame{Topic: "arr", Payload: p}, m); err != nil || len(m.Points) != 3 || m.Points[1].Name != "arr[1]" || m.Points[1].Value.Int() != 5 {
		t.Errorf("array: %+v, %v", m.Points, err)
	}
	// Structures are not mapped.
	if _, err := AppendDataValue(nil, &ua.DataValue{Value: ua.MustVariant(ua.NewNumericNodeID(0, 1))}); !errors.Is(err, ErrUnsupportedType) {
		t.Errorf("NodeId value: err = %v, want ErrUnsupportedType", err)
	}
}

// FuzzDecodePayload: the payload decoder never panics or over-allocates,
// and what it accepts re-encodes to the same bytes.
func FuzzDecodePayload(f *testing.F) {
	for _, v := range []any{true, int8(-1), uint64(1 << 60), float32(1.5), 2.5, "s", []byte{1}, time.Unix(1, 2), []int32{1, 2}, []string{"a", "b"}} {
		p, _ := AppendDataValue(nil, &ua.DataValue{Value: ua.MustVariant(v), SourceTimestamp: time.Unix(5, 0)})
		f.Add(p)
	}
	f.Add([]byte{1, 0, 3, 0, 0, 0, 0x80, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Fuzz(func(t *testing.T, p []byte) {
		var s Sample
		if err := DecodePayload(p, &s); err != nil {
			if !errors.Is(err, ErrPayload) {
				t.Fatalf("error %v is not ErrPayload", err)
			}
			return
		}
		if !s.Array && s.Type != 0 && len(s.Values) != 1 {
			t.Fatalf("scalar with %d values", len(s.Values))
		}
		m := &gateway.Message{}
		if err := (Codec{}).Decode(&gateway.Frame{Topic: "x", Payload: p}, m); err != nil {
			t.Fatalf("codec refuses what DecodePayload accepts: %v", err)
		}
	})
}

func TestConvert(t *testing.T) {
	tests := []struct {
		v    gateway.Value
		t    ua.TypeID
		want any
	}{
		{gateway.Int(42), ua.TypeIDDouble, 42.0},
		{gateway.Float(3), ua.TypeIDByte, uint8(3)},
		{gateway.Int(-128), ua.TypeIDSByte, int8(-128)},
		{gateway.Uint(math.MaxUint64), ua.TypeIDUint64, uint64(math.MaxUint64)},
		{gateway.Int(math.MinInt64), ua.TypeIDInt64, int64(math.MinInt64)},
		{gateway.String("-7"), ua.TypeIDInt16, int16(-7)},
		{gateway.String("18446744073709551615"), ua.TypeIDUint64, uint64(math.MaxUint64)},
		{gateway.String("true"), ua.TypeIDBoolean, true},
		{gateway.Int(1), ua.TypeIDBoolean, true},
		{gateway.Int(5), ua.TypeIDString, "5"},
		{gateway.Float(1.5), ua.TypeIDFloat, float32(1.5)},
		{gateway.Bytes([]byte{1}), ua.TypeIDByteString, []byte{1}},
	}
	for _, tt := range tests {
		got, err := Convert(tt.v, tt.t)
		if err != nil || !equalAny(got, tt.want) {
			t.Errorf("Convert(%v, %s) = %#v, %v; want %#v", tt.v, tt.t, got, err, tt.want)
		}
	}
	bad := []struct {
		v gateway.Value
		t ua.TypeID
	}{
		{gateway.Int(256), ua.TypeIDByte}, {gateway.Int(-1), ua.TypeIDUint32}, {gateway.Float(1.5), ua.TypeIDInt32},
		{gateway.Int(-129), ua.TypeIDSByte}, {gateway.Uint(1 << 63), ua.TypeIDInt64}, {gateway.String("x"), ua.TypeIDDouble},
		{gateway.Int(2), ua.TypeIDBoolean}, {gateway.Float(1e300), ua.TypeIDFloat}, {gateway.Int(1), ua.TypeIDByteString},
		{gateway.Uint(1<<53 + 1), ua.TypeIDDouble}, {gateway.Float(math.NaN()), ua.TypeIDInt16},
	}
	for _, tt := range bad {
		if got, err := Convert(tt.v, tt.t); !errors.Is(err, ErrTypeMismatch) {
			t.Errorf("Convert(%v, %s) = %#v, %v; want ErrTypeMismatch", tt.v, tt.t, got, err)
		}
	}
}

func equalAny(a, b any) bool {
	if x, ok := a.([]byte); ok {
		y, ok := b.([]byte)
		return ok && string(x) == string(y)
	}
	return a == b
}

// FuzzConvert: a conversion either fails with ErrTypeMismatch or gives a
// value of the target type that holds the same number.
func FuzzConvert(f *testing.F) {
	f.Add(int64(300), uint64(0), 0.0, "", uint8(3), uint8(1))
	f.Add(int64(-5), uint64(1<<63), 2.5, "12", uint8(11), uint8(2))
	f.Fuzz(func(t *testing.T, i int64, u uint64, fl float64, s string, ty, kind uint8) {
		var v gateway.Value
		switch kind % 5 {
		case 0:
			v = gateway.Int(i)
		case 1:
			v = gateway.Uint(u)
		case 2:
			v = gateway.Float(fl)
		case 3:
			v = gateway.String(s)
		default:
			v = gateway.Bool(i&1 == 1)
		}
		target := ua.TypeID(ty%15 + 1)
		got, err := Convert(v, target)
		if err != nil {
			if !errors.Is(err, ErrTypeMismatch) {
				t.Fatalf("Convert(%v, %s): %v", v, target, err)
			}
			return
		}
		if _, err := ua.NewVariant(got); err != nil {
			t.Fatalf("Convert(%v, %s) = %T: not a variant: %v", v, target, got, err)
		}
		lo, hi, signed := intRange(target)
		if hi != 0 && v.Kind() == gateway.KindInt {
			back := ua.MustVariant(got).Int()
			if !signed {
				back = int64(ua.MustVariant(got).Uint())
			}
			if back != v.Int() {
				t.Fatalf("Convert(%v, %s) = %v: changed the number (range -%d..%d)", v, target, got, lo, hi)
			}
		}
	})
}
