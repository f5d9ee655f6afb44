package mqtt

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
)

// stackBytes is the memory of all goroutine stacks.
func stackBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestActiveSessionStackStaysSmall: a session that has published keeps
// no more stack than an idle one. Processing a QoS 1 PUBLISH goes deep
// (decoding, the broker, the ACL, the Uplink's Deliver, the PUBACK); when
// the session goroutine did it itself, its stack grew to 16 KiB and only
// GCs brought it down again, by half per GC, while a device publishing
// every few seconds grew it back. With the GC otherwise off, the sessions
// publish one after the other and one GC runs: each session's goroutine
// must be within 6 KiB (its starting size is 2 or 4 KiB), the stacks of
// the few workers that did the processing included.
func TestActiveSessionStackStaysSmall(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector doubles the stack guard and enlarges frames")
	}
	const sessions = 200
	var opts []ListenerOption
	for i := range sessions {
		opts = append(opts, WithDeviceAuth(DeviceAuth{Username: "d" + strconv.Itoa(i), Password: "p" + strconv.Itoa(i)}))
	}
	l, err := NewListener(append(opts, WithListenAddress("127.0.0.1:0"), WithListenerLogger(conntest.QuietLogger()))...)
	if err != nil {
		t.Fatal(err)
	}
	up := &countingUplink{}
	if err := l.Connect(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = l.Disconnect(ctx)
	}()
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	runtime.GC()
	base := stackBytes()

	for i := range sessions {
		id := strconv.Itoa(i)
		c, _, code := rawSession(t, l.Addr().String(), connectOpts{clientID: "c" + id, user: "d" + id, pass: "p" + id, keepalive: 60})
		if code != 0 {
			t.Fatalf("session %d: CONNACK code %d", i, code)
		}
		if _, err := c.Write(publishQoS1Packet("devices/d"+id+"/t", 1, []byte(`{"v":1}`))); err != nil {
			t.Fatal(err)
		}
		if first, body, err := readPacket(c, 5*time.Second); err != nil || first != 0x40 || len(body) != 2 {
			t.Fatalf("session %d: puback %x %x: %v", i, first, body, err)
		}
	}
	if got := up.n.Load(); got != sessions {
		t.Fatalf("%d frames delivered, want %d", got, sessions)
	}
	runtime.GC()
	per := float64(stackBytes()-base) / sessions
	t.Logf("%.0f B of stack per session after one PUBLISH each and one GC", per)
	if per > 6<<10 {
		t.Fatalf("%.0f B of goroutine stack per session that has published, want at most 6 KiB", per)
	}
}
