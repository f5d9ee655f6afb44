package mqtt

import (
	"errors"
	"strings"
	"testing"

	"github.com/iotgw/gateway/internal/conntest"
)

func TestFilePlan(t *testing.T) {
	const inf = ^uint64(0)
	tests := []struct {
		name       string
		sessions   int
		soft, hard uint64
		raiseTo    uint64
		short      bool
	}{
		{"enough", 10000, 1 << 20, 1 << 20, 0, false},
		{"exactly enough", 1000, 1000 + fileHeadroom, 1 << 20, 0, false},
		{"raise to what is needed", 25000, 1024, 1 << 20, 25000 + fileHeadroom, false},
		{"raise under an unlimited hard limit", 25000, 1024, inf, 25000 + fileHeadroom, false},
		{"raise to hard, still short", 25000, 1024, 20000, 20000, true},
		{"at hard, short", 25000, 20000, 20000, 0, true},
		{"headroom counts", 20000, 20000, 20000, 0, true},
	}
	for _, tt := range tests {
		raiseTo, short := filePlan(tt.sessions, tt.soft, tt.hard)
		if raiseTo != tt.raiseTo || short != tt.short {
			t.Errorf("%s: filePlan(%d, %d, %d) = %d, %v; want %d, %v", tt.name, tt.sessions, tt.soft, tt.hard, raiseTo, short, tt.raiseTo, tt.short)
		}
	}
}

// TestFileLimitWarning: Connect with max_sessions above the file limit
// raises the soft limit as far as the hard one allows and warns once it is
// still short; a later Reconfigure to a higher limit checks again.
func TestFileLimitWarning(t *testing.T) {
	soft, hard := uint64(1024), uint64(20000)
	var set []uint64
	getFileLimit = func() (uint64, uint64, bool) { return soft, hard, true }
	setFileLimit = func(s, _ uint64) error { set = append(set, s); soft = s; return nil }
	defer func() { getFileLimit, setFileLimit = osFileLimit, osSetFileLimit }()

	logs, logOpt := newLogBuffer()
	l, _, _ := startListener(t, conntest.NewCollector(), append(devices, WithMaxSessions(25000), logOpt)...)
	if len(set) != 1 || set[0] != 20000 {
		t.Fatalf("soft limit set to %v, want [20000]", set)
	}
	w := logs.Lines("open file limit is below max_sessions")
	if len(w) != 1 || !strings.Contains(w[0], "max_sessions=25000") || !strings.Contains(w[0], "nofile_soft=20000") {
		t.Fatalf("warnings %q", w)
	}
	// Enough room: no new warning.
	n, err := NewListener(append(devices, WithListenAddress("127.0.0.1:0"), WithMaxSessions(100))...)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Reconfigure(n) {
		t.Fatal("not reconfigured")
	}
	if w := logs.Lines("open file limit is below max_sessions"); len(w) != 1 {
		t.Fatalf("warned for 100 sessions: %q", w)
	}
	// A failed raise is reported and warned about.
	soft, hard = 1024, 1<<20
	setFileLimit = func(uint64, uint64) error { return errors.New("operation not permitted") }
	n, _ = NewListener(append(devices, WithListenAddress("127.0.0.1:0"), WithMaxSessions(30000))...)
	if !l.Reconfigure(n) {
		t.Fatal("not reconfigured")
	}
	if w := logs.Lines("open file limit is below max_sessions"); len(w) != 2 || !strings.Contains(w[1], "nofile_soft=1024") {
		t.Fatalf("warnings after a failed raise: %q", w)
	}
}
