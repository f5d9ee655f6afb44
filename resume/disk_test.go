package resume

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/testenv"
)

// smallFS mounts a tmpfs of size bytes the test owns.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Skip(t, "cannot mount a tmpfs: "+string(out))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// TestFullDisk fills a small file system: Append must fail with
// ErrStoreFull (backpressure, a clear error), keep every record it
// accepted, and work again once space returns.
func TestFullDisk(t *testing.T) {
	for _, tc := range []struct {
		name    string
		minFree int64
	}{
		{"ENOSPC from SQLite", -1},
		{"free-space guard", 512 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := smallFS(t, "6m")
			ballast := filepath.Join(dir, "ballast")
			if err := os.WriteFile(ballast, make([]byte, 2<<20), 0o600); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "q.db")
			cfg := SQLiteConfig{Path: path, MinFreeBytes: tc.minFree, Logger: quietLogger()}
			s, err := OpenSQLiteStore(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			payload := make([]byte, 1024)
			batch := func() []gateway.Record {
				recs := make([]gateway.Record, 32)
				for i := range recs {
					recs[i] = gateway.Record{Priority: gateway.PriorityNormal, Sink: "up", Payload: payload}
				}
				return recs
			}
			accepted := 0
			var full error
			for i := 0; i < 1000 && full == nil; i++ {
				if err := s.Append(ctx, batch()); err != nil {
					full = err
					break
				}
				accepted += 32
			}
			if full == nil {
				t.Fatal("the file system never filled up")
			}
			if !errors.Is(full, ErrStoreFull) {
				t.Fatalf("full disk gave %v, want ErrStoreFull", full)
			}
			t.Logf("accepted %d records, then: %v", accepted, full)
			if err := s.Append(ctx, batch()); !errors.Is(err, ErrStoreFull) {
				t.Fatalf("second append on a full disk: %v", err)
			}
			if got := s.Stats().Rows; got != int64(accepted) {
				t.Fatalf("rows %d, want the %d accepted", got, accepted)
			}
			// Space returns.
			if err := os.Remove(ballast); err != nil {
				t.Fatal(err)
			}
			if err := s.Append(ctx, batch()); err != nil {
				t.Fatalf("append after space returned: %v", err)
			}
			accepted += 32
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			// Reopen runs the integrity check; every accepted record is there.
			s2, err := OpenSQLiteStore(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s2.Close()
			if matches, _ := filepath.Glob(path + ".corrupt-*"); len(matches) != 0 {
				t.Fatalf("store found corrupt after a full disk: %v", matches)
			}
			if got := s2.Stats().Rows; got != int64(accepted) {
				t.Fatalf("after reopen rows %d, want %d", got, accepted)
			}
		})
	}
}
