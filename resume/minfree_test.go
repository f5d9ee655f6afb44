package resume

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/iotgw/gateway"
)

func TestDefaultMinFree(t *testing.T) {
	for _, c := range []struct{ size, want int64 }{
		{16 << 20, 1 << 20},    // floor
		{256 << 20, 5368708},   // 2%
		{1 << 30, 16 << 20},    // cap
		{64 << 30, 16 << 20},   // cap
		{0, 1 << 20},           // unknown size: the floor
		{100 << 20, 2097152},   // 2%
		{1000 << 20, 16 << 20}, // 20 MiB capped
	} {
		if got := DefaultMinFree(c.size); got != c.want {
			t.Errorf("DefaultMinFree(%d) = %d, want %d", c.size, got, c.want)
		}
	}
}

// TestMinFreeDefaultFollowsFileSystemSize injects the file system's
// figures: a 16 MiB partition with most of it free takes records under the
// default guard (it refused everything when the default was a flat
// 16 MiB), refuses them once less than 1 MiB would be left, and the error
// gives the figures.
func TestMinFreeDefaultFollowsFileSystemSize(t *testing.T) {
	var free, size int64
	old := statfs
	statfs = func(string) (int64, int64, bool) { return free, size, true }
	t.Cleanup(func() { statfs = old })
	s, _ := openTestStore(t, nil)
	one := func() error {
		return s.Append(context.Background(), []gateway.Record{{Sink: "up", Payload: make([]byte, 100)}})
	}

	size, free = 16<<20, 12<<20
	if err := one(); err != nil {
		t.Fatalf("16 MiB file system, 12 MiB free: %v", err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}

	free = 900 << 10
	err := one()
	if !errors.Is(err, ErrStoreFull) {
		t.Fatalf("900 KiB free: %v, want ErrStoreFull", err)
	}
	for _, want := range []string{"921600 bytes free", "size 16777216 bytes", "1048576 to keep", "default min_free_bytes", s.cfg.Path[:strings.LastIndex(s.cfg.Path, "/")]} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	// A large file system keeps the 16 MiB cap.
	size, free = 64<<30, 15<<20
	if err := one(); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("64 GiB file system, 15 MiB free: %v, want ErrStoreFull", err)
	}
	free = 17 << 20
	if err := one(); err != nil {
		t.Fatalf("64 GiB file system, 17 MiB free: %v", err)
	}
}

// TestMinFreeExplicit keeps an explicit MinFreeBytes as given.
func TestMinFreeExplicit(t *testing.T) {
	old := statfs
	statfs = func(string) (int64, int64, bool) { return 3 << 20, 16 << 20, true }
	t.Cleanup(func() { statfs = old })
	s, _ := openTestStore(t, func(c *SQLiteConfig) { c.MinFreeBytes = 4 << 20 })
	err := s.Append(context.Background(), []gateway.Record{{Sink: "up", Payload: []byte("x")}})
	if !errors.Is(err, ErrStoreFull) || !strings.Contains(err.Error(), "4194304 to keep, min_free_bytes") {
		t.Fatalf("err %v, want ErrStoreFull naming min_free_bytes 4194304", err)
	}
}
