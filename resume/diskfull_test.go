package resume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

// countingHandler counts log records whose message contains a substring.
type countingHandler struct {
	mu     sync.Mutex
	substr string
	n      int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.substr) {
		h.mu.Lock()
		h.n++
		h.mu.Unlock()
	}
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
func (h *countingHandler) count() int                         { h.mu.Lock(); defer h.mu.Unlock(); return h.n }

// setMaxPageCount sets PRAGMA max_page_count on the store's writer
// connection and returns the value SQLite settled on (it never goes below
// the current size of the database).
func setMaxPageCount(t *testing.T, s *SQLiteStore, n int64) int64 {
	t.Helper()
	var got int64
	if err := s.wdb.QueryRow(fmt.Sprintf("PRAGMA max_page_count = %d", n)).Scan(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

// storeMessages appends n per-sink records for sink "up" as the gateway
// spills them, but never tried yet (Attempts 0, no NextTry): the first
// failed delivery must persist a longer row.
func storeMessages(t *testing.T, s *SQLiteStore, n int) {
	t.Helper()
	recs := make([]gateway.Record, n)
	for i := range recs {
		m := &gateway.Message{ID: idOf(uint64(i + 1)), Device: "d", Topic: "t/" + strings.Repeat("x", 40)}
		p, err := m.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		recs[i] = gateway.Record{ID: m.ID, Priority: gateway.PriorityNormal, Sink: "up", Payload: p}
	}
	if err := s.Append(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
}

// TestDiskFullReleaseRetried reproduces records stranded by a full disk:
// acknowledged messages are in the store, the upstream is down and the
// database cannot grow (PRAGMA max_page_count gives SQLite's real
// SQLITE_FULL), so persisting a failed attempt fails. Once space returns
// and the upstream is back, every record must be delivered and the store
// must end empty, without a restart.
func TestDiskFullReleaseRetried(t *testing.T) {
	for _, drainer := range []bool{false, true} {
		name := "builtin-replay"
		if drainer {
			name = "resume-drainer"
		}
		t.Run(name, func(t *testing.T) {
			const n = 500
			logs := &countingHandler{substr: "release failed"}
			log := slog.New(logs)
			cfg := SQLiteConfig{Path: filepath.Join(t.TempDir(), "q.db"), Logger: log, MinFreeBytes: -1}
			var st gateway.Store
			var sq *SQLiteStore
			if drainer {
				es, err := NewEdgeStore(EdgeConfig{Store: cfg, Drain: DrainerConfig{Logger: log,
					Backoff: Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}}})
				if err != nil {
					t.Fatal(err)
				}
				st, sq = es, es.SQLiteStore
			} else {
				s, err := NewSQLiteStore(cfg)
				if err != nil {
					t.Fatal(err)
				}
				st, sq = s, s
			}
			defer sq.Close()
			storeMessages(t, sq, n)
			setMaxPageCount(t, sq, 1) // clamps to the current size: the disk is full

			// The store really is full: a new batch is refused.
			big := make([]gateway.Record, 64)
			for i := range big {
				big[i] = gateway.Record{Sink: "up", Payload: make([]byte, 512)}
			}
			if err := sq.Append(context.Background(), big); !errors.Is(err, ErrStoreFull) {
				t.Fatalf("append to a full store: %v, want ErrStoreFull", err)
			}

			sink := &recordingSink{ids: map[gateway.MessageID]int{}}
			sink.set(true) // the broker is down
			g, err := gateway.New(gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st),
				gateway.WithSink("up", sink), gateway.WithLogger(log))
			if err != nil {
				t.Fatal(err)
			}
			runGateway(t, g)
			waitUntil(t, "a release to fail on the full disk", func() bool { return logs.count() > 0 })

			setMaxPageCount(t, sq, 1<<30) // space is freed
			sink.set(false)               // the broker is back
			waitUntil(t, "every stored message delivered", func() bool { return sink.count() == n })
			waitUntil(t, "store empty", func() bool { st := sq.Stats(); return st.Rows == 0 && st.Held == 0 })
			for i := 1; i <= n; i++ {
				if sink.ids[idOf(uint64(i))] == 0 {
					t.Fatalf("message %d lost", i)
				}
			}
		})
	}
}
