package resume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func openTestStore(t testing.TB, mod func(*SQLiteConfig)) (*SQLiteStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "q.db")
	cfg := SQLiteConfig{Path: path, Logger: quietLogger()}
	if mod != nil {
		mod(&cfg)
	}
	s, err := OpenSQLiteStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func rec(id byte, prio gateway.Priority, payload string) gateway.Record {
	r := gateway.Record{Priority: prio, Sink: "up", Payload: []byte(payload)}
	r.ID[0] = id
	return r
}

func TestSQLiteStoreOrderHoldAckRelease(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestStore(t, nil)
	recs := []gateway.Record{rec(1, 4, "a"), rec(2, 4, "b"), rec(3, 7, "c"), rec(4, 0, "d")}
	if err := s.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Seq == 0 {
			t.Fatalf("seq not filled: %+v", r)
		}
	}
	if got, _ := s.Next(ctx, 10); len(got) != 0 {
		t.Fatalf("appended records are held, Next returned %d", len(got))
	}
	if err := s.Release(ctx, recs); err != nil {
		t.Fatal(err)
	}
	got, err := s.Next(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	var order string
	for _, r := range got {
		order += string(r.Payload)
	}
	if order != "cabd" {
		t.Fatalf("order %q, want priority then arrival: cabd", order)
	}
	if again, _ := s.Next(ctx, 10); len(again) != 0 {
		t.Fatalf("held records handed out twice: %d", len(again))
	}
	if err := s.Ack(ctx, got[0].Seq, got[1].Seq); err != nil {
		t.Fatal(err)
	}
	// Schedule the rest for later: not due now.
	rest := got[2:]
	for i := range rest {
		rest[i].Attempts = 3
		rest[i].NextTry = time.Now().Add(time.Hour)
	}
	if err := s.Release(ctx, rest); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.Next(ctx, 10); len(due) != 0 {
		t.Fatalf("records not yet due returned: %d", len(due))
	}
	waitRows(t, s, 2)
}

func waitRows(t *testing.T, s *SQLiteStore, want int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Rows != want {
		if time.Now().After(deadline) {
			t.Fatalf("rows = %d, want %d", s.Stats().Rows, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSQLiteStoreRestartResumesScheduleAndIDs(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "q.db")
	s, err := OpenSQLiteStore(SQLiteConfig{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	recs := []gateway.Record{rec(1, 4, "a"), rec(2, 4, "b"), rec(3, 4, "c")}
	if err := s.Append(ctx, recs); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Hour).Round(0)
	recs[1].Attempts, recs[1].NextTry = 5, later
	if err := s.Release(ctx, recs[1:2]); err != nil {
		t.Fatal(err)
	}
	if err := s.Ack(ctx, recs[0].Seq); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := OpenSQLiteStore(SQLiteConfig{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Next(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	// Holds do not survive a restart; the acked one is gone; b is not due.
	if len(got) != 1 || string(got[0].Payload) != "c" || got[0].ID[0] != 3 {
		t.Fatalf("after restart got %+v, want only c with its id", got)
	}
	more := []gateway.Record{rec(9, 4, "z")}
	if err := s2.Append(ctx, more); err != nil {
		t.Fatal(err)
	}
	if more[0].Seq <= got[0].Seq {
		t.Fatalf("sequence went backwards after restart: %d <= %d", more[0].Seq, got[0].Seq)
	}
	if st := s2.Stats(); st.Rows != 3 {
		t.Fatalf("rows %d, want 3", st.Rows)
	}
	// b kept its schedule.
	var attempts, next int64
	if err := s2.db.QueryRow("SELECT attempts, next_try FROM records WHERE seq = ?", int64(recs[1].Seq)).Scan(&attempts, &next); err != nil {
		t.Fatal(err)
	}
	if attempts != 5 || next != later.UnixNano() {
		t.Fatalf("schedule not persisted: attempts %d next %d", attempts, next)
	}
}

func TestSQLiteStoreBounds(t *testing.T) {
	ctx := context.Background()
	t.Run("reject new", func(t *testing.T) {
		s, _ := openTestStore(t, func(c *SQLiteConfig) { c.MaxRows = 3 })
		if err := s.Append(ctx, []gateway.Record{rec(1, 4, "a"), rec(2, 4, "b"), rec(3, 4, "c")}); err != nil {
			t.Fatal(err)
		}
		err := s.Append(ctx, []gateway.Record{rec(4, 4, "d")})
		if !errors.Is(err, ErrStoreFull) {
			t.Fatalf("append over the bound: %v, want ErrStoreFull", err)
		}
		if s.Stats().Rows != 3 {
			t.Fatalf("rows %d", s.Stats().Rows)
		}
	})
	t.Run("drop oldest", func(t *testing.T) {
		s, _ := openTestStore(t, func(c *SQLiteConfig) { c.MaxRows = 3; c.Overflow = OverflowDropOldest })
		old := []gateway.Record{rec(1, 7, "hi"), rec(2, 4, "a"), rec(3, 4, "b")}
		if err := s.Append(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := s.Release(ctx, old); err != nil {
			t.Fatal(err)
		}
		if err := s.Append(ctx, []gateway.Record{rec(4, 4, "c")}); err != nil {
			t.Fatal(err)
		}
		st := s.Stats()
		if st.Rows != 3 || st.Evicted != 1 {
			t.Fatalf("stats %+v, want 3 rows, 1 evicted", st)
		}
		got, _ := s.Next(ctx, 10)
		var order string
		for _, r := range got {
			order += string(r.Payload) + ","
		}
		if order != "hi,b," {
			t.Fatalf("left %q; want the oldest low-priority record evicted (the new one is held)", order)
		}
	})
}

func TestSQLiteStoreCorruptFileMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "q.db")
	junk := []byte(strings.Repeat("not a database, just bytes ", 200))
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := OpenSQLiteStore(SQLiteConfig{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Append(context.Background(), []gateway.Record{rec(1, 4, "a")}); err != nil {
		t.Fatal(err)
	}
	matches, _ := filepath.Glob(path + ".corrupt-*")
	if len(matches) != 1 {
		t.Fatalf("corrupt file not kept aside: %v", matches)
	}
	kept, _ := os.ReadFile(matches[0])
	if string(kept) != string(junk) {
		t.Fatal("moved-aside file changed")
	}
}

func TestSQLiteStoreConcurrentAppendsGroupCommit(t *testing.T) {
	ctx := context.Background()
	s, _ := openTestStore(t, nil)
	const producers, each = 16, 200
	var wg sync.WaitGroup
	seqs := make(chan uint64, producers*each)
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				r := []gateway.Record{rec(byte(p), 4, fmt.Sprintf("%d-%d", p, i))}
				if err := s.Append(ctx, r); err != nil {
					t.Error(err)
					return
				}
				seqs <- r[0].Seq
			}
		}(p)
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for q := range seqs {
		if seen[q] {
			t.Fatalf("seq %d given twice", q)
		}
		seen[q] = true
	}
	st := s.Stats()
	if st.Rows != producers*each || st.CommittedRecs != producers*each {
		t.Fatalf("stats %+v", st)
	}
	if st.Commits >= producers*each {
		t.Fatalf("%d commits for %d single-record appends: no grouping", st.Commits, producers*each)
	}
}
