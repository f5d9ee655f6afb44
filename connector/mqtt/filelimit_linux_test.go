//go:build linux

package mqtt

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
)

// TestFileLimitProcess runs the real check in a child process whose
// limits the test lowered: soft 1024, hard 2000, max_sessions 25000.
func TestFileLimitProcess(t *testing.T) {
	if os.Getenv("MQTT_FILELIMIT_CHILD") == "1" {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 1024, Max: 2000}); err != nil {
			t.Fatal(err)
		}
		logs, logOpt := newLogBuffer()
		l, err := NewListener(append(devices, WithListenAddress("127.0.0.1:0"), WithMaxSessions(25000), logOpt)...)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Connect(context.Background(), conntest.NewCollector()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = l.Disconnect(ctx)
		var r syscall.Rlimit
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
		os.Stdout.WriteString("CHILD soft=" + strconv.FormatUint(uint64(r.Cur), 10) + "\n" + logs.String())
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFileLimitProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "MQTT_FILELIMIT_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "CHILD soft=2000") || !strings.Contains(string(out), "open file limit is below max_sessions") {
		t.Fatalf("child output, want the soft limit raised to 2000 and a warning:\n%s", out)
	}
}
