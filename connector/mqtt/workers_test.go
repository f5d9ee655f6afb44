package mqtt

import (
	"context"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/mqttwire"
)

// blockingUplink holds every frame of one device until release closes,
// and passes the others on.
type blockingUplink struct {
	device  string
	held    chan struct{}
	release chan struct{}
	topics  chan string
}

func (u *blockingUplink) Deliver(ctx context.Context, f *gateway.Frame) error {
	defer f.Release()
	if f.Device == u.device {
		u.held <- struct{}{}
		select {
		case <-u.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	u.topics <- f.Device + " " + f.Topic
	return nil
}

// TestWorkersSessionsDoNotWaitForEachOther: while one session's Deliver
// blocks, another session's PUBLISHes are processed and acknowledged; the
// blocked session's packets wait for it and come in order.
func TestWorkersSessionsDoNotWaitForEachOther(t *testing.T) {
	up := &blockingUplink{device: "slow", held: make(chan struct{}, 4), release: make(chan struct{}), topics: make(chan string, 16)}
	l, err := NewListener(WithListenAddress("127.0.0.1:0"), WithListenerLogger(conntest.QuietLogger()),
		WithDeviceAuth(DeviceAuth{Username: "slow", Password: "p"}), WithDeviceAuth(DeviceAuth{Username: "fast", Password: "p"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Connect(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = l.Disconnect(ctx)
	}()
	slow, _, _ := rawSession(t, l.Addr().String(), connectOpts{clientID: "s", user: "slow", pass: "p", keepalive: 60})
	fast, _, _ := rawSession(t, l.Addr().String(), connectOpts{clientID: "f", user: "fast", pass: "p", keepalive: 60})
	// Two PUBLISHes in one write: the second waits behind the first.
	burst := append(publishQoS1Packet("devices/slow/1", 1, []byte("a")), publishQoS1Packet("devices/slow/2", 2, []byte("b"))...)
	if _, err := slow.Write(burst); err != nil {
		t.Fatal(err)
	}
	select {
	case <-up.held:
	case <-time.After(5 * time.Second):
		t.Fatal("the slow device's frame never reached the Uplink")
	}
	for i := range 3 {
		if _, err := fast.Write(publishQoS1Packet("devices/fast/t", uint16(10+i), []byte("x"))); err != nil {
			t.Fatal(err)
		}
		if first, body, err := readPacket(fast, 5*time.Second); err != nil || first != 0x40 || body[1] != byte(10+i) {
			t.Fatalf("fast device, PUBLISH %d while another Deliver blocks: %x %x %v", i, first, body, err)
		}
		if got := <-up.topics; got != "fast t" {
			t.Fatalf("delivered %q", got)
		}
	}
	close(up.release)
	for _, want := range []string{"slow 1", "slow 2"} {
		select {
		case got := <-up.topics:
			if got != want {
				t.Fatalf("delivered %q, want %q", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q never delivered", want)
		}
	}
	rd := mqttwire.NewReader(readDeadline{slow}, 256, 0) // both PUBACKs may come in one read
	rd.Idle = 5 * time.Second
	for id := byte(1); id <= 2; id++ {
		if first, body, err := rd.Next(); err != nil || first != 0x40 || body[1] != id {
			t.Fatalf("slow device, PUBACK %d: %x %x %v", id, first, body, err)
		}
	}
}
