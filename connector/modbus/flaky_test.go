package modbus

import (
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/lograte"
)

// TestFlakyPeerKeepsPolling polls a pymodbus server that closes the
// connection instead of answering every 10th request. Each connection
// answers requests before it breaks, so the reconnect delay stays at its
// minimum (it does not grow towards the maximum because no connection
// lives the stable period), and the request that hit the close is retried
// at once on the next connection, so the cycle completes on schedule.
func TestFlakyPeerKeepsPolling(t *testing.T) {
	addr := startPymodbusFlaky(t, 300, 10)
	var logs logBuffer
	c, err := New(WithLogger(textLogger(&logs)), WithTimeout(time.Second),
		WithDevice(Device{Name: "plc", Address: addr, Interval: 50 * time.Millisecond,
			Ranges: []Range{{HoldingRegisters, 0, 4}, {InputRegisters, 0, 4}}})) // 2 requests per cycle
	if err != nil {
		t.Fatal(err)
	}
	c.lim = lograte.New(time.Hour)
	d := c.devices["plc"]
	col := conntest.NewCollector()
	start := time.Now()
	connect(t, c, col)
	const cycles = 60 // about 12 connection drops
	// Before the fix the delay grows to tens of seconds, so wait for the
	// cycles with a bound and judge what came.
	for deadline := time.Now().Add(20 * time.Second); d.polls.Load() < cycles && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	polls, done := d.polls.Load(), d.pollsDone.Load()
	t.Logf("%d of %d cycles completed in %v (%d intervals), %d reconnects, backoff attempt up to %d", done, polls,
		time.Since(start).Round(time.Millisecond), time.Since(start)/(50*time.Millisecond),
		c.Stats().Devices["plc"].Reconnects, d.maxAttempt.Load())
	if polls < cycles {
		t.Errorf("only %d poll cycles in 20s at a 50ms interval", polls)
	}
	if float64(done) < 0.9*float64(polls) {
		t.Errorf("%d of %d poll cycles completed, want at least 90%%", done, polls)
	}
	// Reconnecting at once keeps the schedule: hardly an interval passes
	// without a completed cycle.
	if intervals := time.Since(start) / (50 * time.Millisecond); float64(done) < 0.8*float64(intervals) {
		t.Errorf("%d cycles completed in %d poll intervals, want at least 80%%", done, intervals)
	}
	if st := c.Stats().Devices["plc"]; st.Reconnects < 3 {
		t.Errorf("reconnects = %d: the peer did not drop connections as arranged", st.Reconnects)
	}
	// The drops are logged once per cause and interval, not per drop.
	if lines := logs.Lines("connection lost"); len(lines) != 1 {
		t.Errorf("%d connection-lost lines for %d reconnects, want 1 per interval:\n%s", len(lines),
			c.Stats().Devices["plc"].Reconnects, strings.Join(lines, "\n"))
	}
	if a := d.maxAttempt.Load(); a > 1 {
		t.Errorf("backoff attempt reached %d in %d reconnects, want 1 (the delay reset by each connection's answered requests)",
			a, c.Stats().Devices["plc"].Reconnects)
	}
}
