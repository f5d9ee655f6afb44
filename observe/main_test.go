package observe

import (
	"os"
	"testing"
)

// TestMain stops the peers the package's tests share (started on first
// use): the OpenTelemetry Collector and the Prometheus server.
func TestMain(m *testing.M) {
	code := m.Run()
	if col != nil {
		col.stop()
	}
	if promShared != nil {
		promShared.stop()
	}
	os.Exit(code)
}
