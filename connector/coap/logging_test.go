package coap

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
)

// TestGoCoapErrorsReachTheLogger sends a malformed datagram to go-coap's
// own UDP server (fast path off): its error report comes out through the
// connector's logger, not on stdout.
func TestGoCoapErrorsReachTheLogger(t *testing.T) {
	var out lockedBuffer
	log := slog.New(slog.NewJSONHandler(&out, nil))
	col := conntest.NewCollector()
	_, addr := start(t, col, WithFastPath(false), WithLogger(log))
	conn := rawPeer(t, addr)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), `"msg":"coap: go-coap"`) {
		if time.Now().After(deadline) {
			t.Fatalf("go-coap's error not logged through the connector's logger; got %q", out.String())
		}
		roundTrip(t, conn, []byte{0x40, 0x02, 0, 3, 0xf1, 0}, 50*time.Millisecond) // reserved option delta
	}
	if !strings.Contains(out.String(), "malformed") {
		t.Fatalf("logged line does not carry go-coap's reason: %q", out.String())
	}
}
