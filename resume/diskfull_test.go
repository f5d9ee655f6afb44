package resume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/testenv"
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

// TestDiskFullTmpfsFloodRecovers is the field report on a real file
// system: the store on a small tmpfs, the free-space guard off, the
// upstream down, a device flooding. Frames are accepted until the disk is
// full, then refused with ErrStoreFull. When space returns (the tmpfs is
// grown) and the upstream is back, every accepted frame is delivered and
// the store ends empty, without a restart.
func TestDiskFullTmpfsFloodRecovers(t *testing.T) {
	testenv.RequireRoot(t)
	for _, drainer := range []bool{false, true} {
		name := "builtin-replay"
		if drainer {
			name = "resume-drainer"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
				testenv.Skip(t, fmt.Sprintf("cannot mount a tmpfs: %v: %s", err, out))
			}
			t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
			log := quietLogger()
			cfg := SQLiteConfig{Path: filepath.Join(dir, "q.db"), Logger: log, MinFreeBytes: -1}
			var st gateway.Store
			var sq *SQLiteStore
			if drainer {
				es, err := NewEdgeStore(EdgeConfig{Store: cfg, Drain: DrainerConfig{Logger: log,
					Backoff: Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}}})
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
			sink := &recordingSink{ids: map[gateway.MessageID]int{}}
			sink.set(true)
			g, err := gateway.New(gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st),
				gateway.WithSink("up", sink), gateway.WithLogger(log))
			if err != nil {
				t.Fatal(err)
			}
			runGateway(t, g)

			accepted := map[gateway.MessageID]bool{}
			refused := 0
			payload := []byte(strings.Repeat("p", 200))
			deadline := time.Now().Add(20 * time.Second)
			for i := uint64(1); refused < 200; i++ {
				if time.Now().After(deadline) {
					t.Fatalf("the 1 MiB store never filled: %d accepted, %d refused", len(accepted), refused)
				}
				f := gateway.AcquireFrame()
				f.Device, f.Topic, f.ID = "d", "t", idOf(i)
				f.Payload = append(f.Payload, payload...)
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				err := g.Inject(ctx, f)
				cancel()
				switch {
				case err == nil:
					accepted[idOf(i)] = true
				case errors.Is(err, ErrStoreFull):
					refused++
				}
			}
			if out, err := exec.Command("mount", "-o", "remount,size=64m", dir).CombinedOutput(); err != nil {
				t.Fatalf("growing the tmpfs: %v: %s", err, out)
			}
			sink.set(false)
			t.Logf("%d frames accepted before the disk filled", len(accepted))
			waitUntil(t, "every accepted frame delivered", func() bool {
				sink.mu.Lock()
				defer sink.mu.Unlock()
				for id := range accepted {
					if sink.ids[id] == 0 {
						return false
					}
				}
				return true
			})
			waitUntil(t, "store empty", func() bool { st := sq.Stats(); return st.Rows == 0 && st.Held == 0 })
		})
	}
}
