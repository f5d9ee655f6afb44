package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"testing/slogtest"
	"time"
)

func TestLogHandlerSlogtest(t *testing.T) {
	var buf bytes.Buffer
	h := NewLogHandler(&buf, &LogOptions{Level: slog.LevelDebug})
	results := func() []map[string]any {
		var ms []map[string]any
		for _, line := range bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var m map[string]any
			if err := json.Unmarshal(line, &m); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			ms = append(ms, m)
		}
		return ms
	}
	if err := slogtest.TestHandler(h, results); err != nil {
		t.Fatal(err)
	}
}

func TestLogHandlerFixedFields(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewLogHandler(&buf, &LogOptions{ServiceName: "gw-test"})).With("connector", "plc")
	log.Info("routed", "device", "dev-7", "rule", "hot", "decision", "routed",
		"trace_id", "4bf92f3577b34da6a3ce929d0e0e4736", "span_id", "00f067aa0ba902b7",
		"err", errors.New(`bad "quote"`+"\n"), "n", 3, "d", 1500*time.Millisecond,
		slog.Group("g", "x", 1.5, "y", true))
	line := buf.String()
	if !strings.HasSuffix(line, "}\n") || strings.Count(line, "\n") != 1 {
		t.Fatalf("not one line: %q", line)
	}
	want := []string{"time", "level", "msg", "service_name", "trace_id", "span_id", "device", "connector", "rule", "decision"}
	// The fixed fields come first, in order.
	pos := -1
	for _, k := range want {
		i := strings.Index(line, `"`+k+`":`)
		if i < 0 || i < pos {
			t.Fatalf("field %s missing or out of order in %s", k, line)
		}
		pos = i
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	for k, v := range map[string]any{
		"level": "INFO", "msg": "routed", "service_name": "gw-test", "device": "dev-7", "connector": "plc",
		"rule": "hot", "decision": "routed", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
		"span_id": "00f067aa0ba902b7", "err": "bad \"quote\"\n", "n": 3.0, "d": 1.5e9,
	} {
		if m[k] != v {
			t.Errorf("%s = %#v, want %#v", k, m[k], v)
		}
	}
	if g, _ := m["g"].(map[string]any); g["x"] != 1.5 || g["y"] != true {
		t.Errorf("group g = %#v", m["g"])
	}
	if strings.Count(line, `"device"`) != 1 {
		t.Errorf("device written twice: %s", line)
	}
	// A line without them still has every fixed field.
	buf.Reset()
	slog.New(NewLogHandler(&buf, nil)).Warn("plain")
	m = nil
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range want {
		if _, ok := m[k]; !ok {
			t.Errorf("plain line lacks %s: %s", k, buf.String())
		}
	}
}

func TestLogHandlerLevel(t *testing.T) {
	var buf bytes.Buffer
	lv := new(slog.LevelVar)
	lv.Set(slog.LevelWarn)
	log := slog.New(NewLogHandler(&buf, &LogOptions{Level: lv}))
	log.Info("hidden")
	if buf.Len() != 0 {
		t.Fatalf("info written at warn: %s", buf.String())
	}
	lv.Set(slog.LevelInfo)
	log.Info("shown")
	if !strings.Contains(buf.String(), `"msg":"shown"`) {
		t.Fatalf("info not written at info: %q", buf.String())
	}
}

// TestLogBelowLevelNoAlloc is the acceptance check: a log call below the
// enabled level allocates nothing.
func TestLogBelowLevelNoAlloc(t *testing.T) {
	log := slog.New(NewLogHandler(io.Discard, nil))
	dev := strings.Repeat("d", 8)
	ctx := context.Background()
	if n := testing.AllocsPerRun(1000, func() {
		log.LogAttrs(ctx, slog.LevelDebug, "frame", slog.String("device", dev), slog.Int("n", 12345))
		log.Debug("frame", "connector", "plc", "n", 7)
	}); n != 0 {
		t.Fatalf("%v allocs per disabled log call, want 0", n)
	}
}

func BenchmarkLogDisabled(b *testing.B) {
	log := slog.New(NewLogHandler(io.Discard, nil))
	dev := "device-0042"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		log.LogAttrs(ctx, slog.LevelDebug, "frame", slog.String("device", dev), slog.Int("n", 12345))
	}
}

func BenchmarkLogEnabled(b *testing.B) {
	log := slog.New(NewLogHandler(io.Discard, nil))
	dev := "device-0042"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		log.LogAttrs(ctx, slog.LevelInfo, "frame", slog.String("device", dev), slog.String("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"), slog.Int("n", 12345))
	}
}

func FuzzLogHandler(f *testing.F) {
	f.Add("msg", "key", "value \"x\"\n", "grp")
	f.Add("", "", "\xff\u2028", "")
	f.Fuzz(func(t *testing.T, msg, key, val, group string) {
		var buf bytes.Buffer
		log := slog.New(NewLogHandler(&buf, nil))
		if group != "" {
			log = log.WithGroup(group).With(key, val)
		}
		log.Info(msg, key, val, slog.Group(group, key, val))
		var m map[string]any
		if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
			t.Fatalf("invalid JSON %q: %v", buf.String(), err)
		}
	})
}
