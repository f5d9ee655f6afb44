package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

// lockedBuffer is a buffer safe for the handlers' concurrent writes.
type lockedBuffer = conntest.Buffer

// askedHandler records the levels it was asked about, so a test can tell
// a line suppressed by this handler's level from one sent elsewhere.
type askedHandler struct {
	slog.Handler
	warns *atomic.Int64
}

func (h askedHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if l == slog.LevelWarn {
		h.warns.Add(1)
	}
	return h.Handler.Enabled(ctx, l)
}

func (h askedHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return askedHandler{h.Handler.WithAttrs(as), h.warns}
}

func (h askedHandler) WithGroup(name string) slog.Handler {
	return askedHandler{h.Handler.WithGroup(name), h.warns}
}

// TestComponentsLogThroughTheDaemonLogger builds the daemon's registry with
// a JSON logger and runs a Modbus connector against a closed port: its
// warnings come out as JSON through that logger, tagged with the
// connector's name; at error level they are suppressed; nothing reaches
// slog.Default().
func TestComponentsLogThroughTheDaemonLogger(t *testing.T) {
	var def lockedBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&def, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })

	for _, lv := range []slog.Level{slog.LevelWarn, slog.LevelError} {
		t.Run(lv.String(), func(t *testing.T) {
			var out lockedBuffer
			var warns atomic.Int64
			log := slog.New(askedHandler{slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: lv}), &warns})
			reg, _ := registry(t, log)
			y := fmt.Sprintf(`
connectors:
  - name: plc
    modbus:
      backoff_min: 20ms
      backoff_max: 50ms
      devices:
        - name: plc-1
          address: 127.0.0.1:%d
          interval: 50ms
          ranges: [{table: hr, address: 0, count: 1}]
`, testenv.FreePort(t))
			cfg, err := gateway.ParseConfig([]byte(y), "gw.yaml")
			if err != nil {
				t.Fatal(err)
			}
			g, err := gateway.New(gateway.WithLogger(log), gateway.WithRegistry(reg), gateway.WithConfig(cfg))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			var once sync.Once
			stop := func() {
				once.Do(func() {
					cancel()
					if err := <-done; err != nil {
						t.Errorf("Run: %v", err)
					}
				})
			}
			defer stop()
			deadline := time.Now().Add(5 * time.Second)
			cond := func() bool { return strings.Contains(out.String(), "modbus device unreachable") }
			if lv == slog.LevelError {
				cond = func() bool { return warns.Load() >= 3 }
			}
			for !cond() {
				if time.Now().After(deadline) {
					t.Fatalf("no connector warning through the given logger; given logger got %.300q, slog.Default got %.300q", out.String(), def.String())
				}
				time.Sleep(5 * time.Millisecond)
			}
			stop() // the lines checked below are complete
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				if line == "" {
					continue
				}
				var rec map[string]any
				if err := json.Unmarshal([]byte(line), &rec); err != nil {
					t.Fatalf("log line is not JSON: %q", line)
				}
				if lv == slog.LevelError && rec["level"] != "ERROR" {
					t.Fatalf("line below error level written: %q", line)
				}
				if strings.Contains(line, "modbus device unreachable") && rec["connector"] != "plc" {
					t.Fatalf("connector line without connector=plc: %q", line)
				}
			}
			if lv == slog.LevelError && strings.Contains(out.String(), "modbus device unreachable") {
				t.Fatalf("warning written at error level: %q", out.String())
			}
		})
	}
	if s := def.String(); s != "" {
		t.Fatalf("lines reached slog.Default(): %q", s)
	}
}
