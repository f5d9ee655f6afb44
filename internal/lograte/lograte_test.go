package lograte

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimiterPerCause(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	l := New(time.Minute)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	ctx := context.Background()

	for range 5 {
		l.Log(ctx, log, slog.LevelWarn, "a", "refused", "device", "a")
	}
	l.Log(ctx, log, slog.LevelWarn, "b", "refused", "device", "b")
	if got := strings.Count(buf.String(), "\n"); got != 2 {
		t.Fatalf("lines = %d, want 2 (one per cause):\n%s", got, buf.String())
	}
	now = now.Add(time.Minute)
	buf.Reset()
	l.Log(ctx, log, slog.LevelWarn, "a", "refused", "device", "a")
	if !strings.Contains(buf.String(), "suppressed=4") {
		t.Fatalf("line after the interval = %q, want suppressed=4", buf.String())
	}
	buf.Reset()
	l.Log(ctx, log, slog.LevelWarn, "b", "refused", "device", "b")
	if strings.Contains(buf.String(), "suppressed") {
		t.Fatalf("cause b had no repeats: %q", buf.String())
	}
}

func TestLimiterBounded(t *testing.T) {
	l := New(time.Minute)
	now := time.Unix(1000, 0)
	l.now = func() time.Time { return now }
	for i := range MaxCauses + 100 {
		if ok, _ := l.Allow(fmt.Sprint(i)); !ok {
			t.Fatalf("first line of cause %d suppressed", i)
		}
	}
	if len(l.causes) > MaxCauses {
		t.Fatalf("remembered %d causes, bound %d", len(l.causes), MaxCauses)
	}
	now = now.Add(time.Minute)
	if ok, _ := l.Allow("new"); !ok || len(l.causes) > MaxCauses {
		t.Fatalf("after the interval: ok=%v causes=%d", ok, len(l.causes))
	}
}

func TestLimiterDisabledLevel(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}))
	l := New(time.Minute)
	l.Log(context.Background(), log, slog.LevelWarn, "a", "refused")
	l.Log(context.Background(), nil, slog.LevelWarn, "a", "refused")
	if buf.Len() != 0 || len(l.causes) != 0 {
		t.Fatalf("a disabled level wrote %q and remembered %d causes", buf.String(), len(l.causes))
	}
}
