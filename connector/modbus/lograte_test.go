package modbus

import (
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/lograte"
	"github.com/iotgw/gateway/internal/testenv"
	mb "github.com/simonvetter/modbus"
)

// logBuffer collects log lines from the pollers' goroutines.
type logBuffer = conntest.Buffer

func textLogger(b *logBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// TestExceptionLogRateLimited: a range the device refuses on every poll
// is logged once per interval with its cause (device, block, exception
// code), and the next line counts the polls suppressed in between.
func TestExceptionLogRateLimited(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	h := &edgeServer{}
	h.set(0, mb.ErrIllegalDataAddress)
	srv := startEdgeServer(t, addr, h)
	t.Cleanup(func() { _ = srv.Stop() })
	var logs logBuffer
	c, err := New(WithLogger(textLogger(&logs)), WithDevice(Device{Name: "plc", Address: addr, Interval: 5 * time.Millisecond,
		Ranges: []Range{{HoldingRegisters, 40, 2}}}))
	if err != nil {
		t.Fatal(err)
	}
	const every = time.Second
	c.lim = lograte.New(every)
	d := c.devices["plc"]
	start := time.Now()
	connect(t, c, conntest.NewCollector())
	conntest.Eventually(t, 20*time.Second, "a line with the suppressed count", func() bool {
		return len(logs.Lines("suppressed=")) > 0
	})
	elapsed, polls := time.Since(start), d.polls.Load()
	lines := logs.Lines("modbus exception")
	if max := int(elapsed/every) + 1; len(lines) > max || len(lines) < 2 {
		t.Fatalf("%d exception lines for %d polls in %v, want 2..%d:\n%s", len(lines), polls, elapsed, max, strings.Join(lines, "\n"))
	}
	for _, want := range []string{"device=plc", "block=hr/40+2", "code=2"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("line %q lacks %s", lines[0], want)
		}
	}
	if !strings.Contains(lines[1], "suppressed=") || strings.Contains(lines[1], "suppressed=0") {
		t.Errorf("second line %q does not count the suppressed repeats", lines[1])
	}
	if polls < 10 {
		t.Errorf("only %d polls: the test did not repeat the exception", polls)
	}
	// Every exception is counted, logged or not, per device and in total.
	st := c.Stats()
	if dev := st.Devices["plc"]; dev.Exceptions < 10 || st.Total.Exceptions != dev.Exceptions || dev.Errors < dev.Exceptions {
		t.Errorf("exception counters: device %+v, total %+v; want at least 10 and counted as errors", dev, st.Total)
	}
}
