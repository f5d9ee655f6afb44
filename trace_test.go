package gateway

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const testTraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

func TestParseTraceParent(t *testing.T) {
	tc, err := ParseTraceParent(testTraceParent)
	if err != nil {
		t.Fatal(err)
	}
	if tc.TraceID.String() != "4bf92f3577b34da6a3ce929d0e0e4736" || tc.SpanID.String() != "00f067aa0ba902b7" || !tc.Sampled() {
		t.Fatalf("got %+v", tc)
	}
	if got := tc.TraceParent(); got != testTraceParent {
		t.Fatalf("round trip: %q", got)
	}
	// A future version with more fields is read as 00.
	if _, err := ParseTraceParent("cc" + testTraceParent[2:] + "-what-the-future-holds"); err != nil {
		t.Fatalf("future version: %v", err)
	}
	for _, bad := range []string{
		"",
		testTraceParent[:54],
		testTraceParent + "-",
		"ff" + testTraceParent[2:],
		strings.ToUpper(testTraceParent),
		"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
		"zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	} {
		if _, err := ParseTraceParent(bad); !errors.Is(err, ErrTraceContext) {
			t.Errorf("%q: err %v, want ErrTraceContext", bad, err)
		}
	}
}

func TestParseTraceHeaders(t *testing.T) {
	tc, err := ParseTraceHeaders(testTraceParent, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
	if err != nil || tc.State != "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE" {
		t.Fatalf("tc %+v err %v", tc, err)
	}
	tc, err = ParseTraceHeaders(testTraceParent, "not a tracestate")
	if err != nil || tc.State != "" || !tc.IsValid() {
		t.Fatalf("bad tracestate must be dropped, not the context: %+v %v", tc, err)
	}
	if tc, err := ParseTraceHeaders("", "a=b"); err != nil || tc.IsValid() {
		t.Fatalf("no traceparent: %+v %v", tc, err)
	}
}

func TestTraceBinary(t *testing.T) {
	tc, _ := ParseTraceParent(testTraceParent)
	b := tc.AppendTraceBinary(nil)
	if len(b) != TraceBinaryLen {
		t.Fatalf("len %d", len(b))
	}
	got, err := ParseTraceBinary(b)
	if err != nil || got != tc {
		t.Fatalf("got %+v, %v", got, err)
	}
	for i := range []int{0, 1, 18, 27} {
		bad := append([]byte(nil), b...)
		bad[[]int{0, 1, 18, 27}[i]] = 9
		if _, err := ParseTraceBinary(bad); !errors.Is(err, ErrTraceContext) {
			t.Errorf("byte %d changed: err %v", i, err)
		}
	}
	if _, err := ParseTraceBinary(b[:28]); !errors.Is(err, ErrTraceContext) {
		t.Errorf("short: %v", err)
	}
}

func FuzzParseTraceParent(f *testing.F) {
	f.Add(testTraceParent)
	f.Add("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-extra")
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff")
	f.Fuzz(func(t *testing.T, s string) {
		tc, err := ParseTraceParent(s)
		if err != nil {
			if !errors.Is(err, ErrTraceContext) {
				t.Fatalf("%q: error %v does not wrap ErrTraceContext", s, err)
			}
			return
		}
		if !tc.IsValid() {
			t.Fatalf("%q: accepted an invalid context", s)
		}
		again, err := ParseTraceParent(tc.TraceParent())
		if err != nil || again.TraceID != tc.TraceID || again.SpanID != tc.SpanID {
			t.Fatalf("%q: round trip %+v %v", s, again, err)
		}
	})
}

func FuzzParseTraceBinary(f *testing.F) {
	tc, _ := ParseTraceParent(testTraceParent)
	f.Add(tc.AppendTraceBinary(nil))
	f.Add([]byte{0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		tc, err := ParseTraceBinary(b)
		if err != nil {
			if !errors.Is(err, ErrTraceContext) {
				t.Fatalf("error %v does not wrap ErrTraceContext", err)
			}
			return
		}
		if got := tc.AppendTraceBinary(nil); string(got) != string(b) {
			t.Fatalf("round trip %x != %x", got, b)
		}
	})
}

// A frame record written before trace contexts existed (version 1) stays
// readable; a version 2 record carries the context through a replay.
func TestFrameBinaryTraceContext(t *testing.T) {
	f := frame("d1", "env", 1.5)
	f.ID = MessageID{1, 2, 3}
	f.Connector, f.Received = "c", time.Unix(100, 5)
	v1 := appendFrameBinary(nil, f) // no trace started: version 1
	if v1[0] != 1 {
		t.Fatalf("version %d", v1[0])
	}
	g := &Gateway{s: defaultSettings()}
	f.Trace, _ = ParseTraceParent(testTraceParent)
	g.startTrace(f)
	v2 := appendFrameBinary(nil, f)
	if v2[0] != 2 {
		t.Fatalf("version %d", v2[0])
	}
	for _, c := range []struct {
		b     []byte
		trace bool
	}{{v1, false}, {v2, true}} {
		got := AcquireFrame()
		if err := unmarshalFrameBinary(got, c.b); err != nil {
			t.Fatal(err)
		}
		if got.Device != "d1" || got.ID != f.ID || !got.Received.Equal(f.Received) || string(got.Payload) != string(f.Payload) {
			t.Fatalf("frame %+v", got)
		}
		if got.tr.started != c.trace || c.trace && (got.gw != f.gw || got.tr.parent != f.Trace.SpanID) {
			t.Fatalf("trace: started %v gw %+v parent %v; want %+v %v", got.tr.started, got.gw, got.tr.parent, f.gw, f.Trace.SpanID)
		}
		got.Release()
	}
	for i := range v2[1:] {
		got := AcquireFrame()
		if err := unmarshalFrameBinary(got, v2[:i+1]); err == nil {
			t.Fatalf("truncated at %d: no error", i+1)
		}
		got.Release()
	}
	f.Release()
}

func TestMessageBinaryTraceContext(t *testing.T) {
	m := &Message{ID: MessageID{9}, Device: "d"}
	m.Trace, _ = ParseTraceParent(testTraceParent)
	m.Trace.State = "a=b"
	b, err := m.AppendBinary(nil)
	if err != nil || b[0] != 2 {
		t.Fatalf("version %d err %v", b[0], err)
	}
	var got Message
	if err := got.UnmarshalBinary(b); err != nil || got.Trace != m.Trace {
		t.Fatalf("got %+v err %v", got.Trace, err)
	}
	m.Trace = TraceContext{}
	b, _ = m.AppendBinary(nil)
	if b[0] != 1 {
		t.Fatalf("no context: version %d", b[0])
	}
}

func TestStartTrace(t *testing.T) {
	g := &Gateway{s: defaultSettings()}
	// Not traced here: the device's context passes through unchanged.
	f := AcquireFrame()
	f.Trace, _ = ParseTraceParent(testTraceParent)
	g.startTrace(f)
	if f.gw != f.Trace {
		t.Fatalf("untraced gateway changed the context: %+v", f.gw)
	}
	f.Release()
	// No device context: a new trace, not sampled.
	f = AcquireFrame()
	g.startTrace(f)
	if !f.gw.IsValid() || f.tr.parent.IsValid() {
		t.Fatalf("new trace: %+v", f.gw)
	}
	f.Release()

	g.tracer = noopTracer()
	g.sampleBelow = ratioThreshold(0)
	f = AcquireFrame()
	f.Trace, _ = ParseTraceParent(testTraceParent)
	g.startTrace(f)
	if f.gw.TraceID != f.Trace.TraceID || f.gw.SpanID == f.Trace.SpanID || !f.gw.Sampled() || f.tr.parent != f.Trace.SpanID {
		t.Fatalf("device sampled flag must win over ratio 0: %+v", f.gw)
	}
	f.Release()
	f = AcquireFrame()
	f.Trace, _ = ParseTraceParent(testTraceParent[:53] + "00")
	g.sampleBelow = ratioThreshold(1)
	g.startTrace(f)
	if f.gw.Sampled() {
		t.Fatal("device's unsampled flag must win over ratio 1")
	}
	f.Release()
	n := 0
	g.sampleBelow = ratioThreshold(0.25)
	for i := 0; i < 20000; i++ {
		f = AcquireFrame()
		g.startTrace(f)
		if f.gw.Sampled() {
			n++
		}
		f.Release()
	}
	if n < 4500 || n > 5500 {
		t.Fatalf("ratio 0.25 sampled %d of 20000", n)
	}
}
