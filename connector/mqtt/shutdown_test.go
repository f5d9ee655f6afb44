package mqtt

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

// TestListenerDisconnectWhileDevicesLeave: Disconnect returns in time
// while devices drop their connections at the same moment. The embedded
// broker's own Close takes a read lock twice while sessions that end take
// the write lock, which can deadlock; Disconnect must not depend on it.
func TestListenerDisconnectWhileDevicesLeave(t *testing.T) {
	const sessions = 300
	var opts []ListenerOption
	for i := 0; i < sessions; i++ {
		opts = append(opts, WithDeviceAuth(DeviceAuth{Username: "d" + strconv.Itoa(i), Password: "p"}))
	}
	for round := 0; round < 10; round++ {
		l, err := NewListener(append(opts, WithListenAddress("127.0.0.1:0"), WithListenerLogger(conntest.QuietLogger()))...)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Connect(context.Background(), conntest.NewCollector()); err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		conns := make([]net.Conn, sessions)
		for i := range conns {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			id := strconv.Itoa(i)
			if _, err := c.Write(connectPacket("d"+id, "d"+id, "p")); err != nil {
				t.Fatal(err)
			}
			ack := make([]byte, 4)
			if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
				t.Fatalf("session %d: connack %x %v", i, ack, err)
			}
			conns[i] = c
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, c := range conns {
				c.Close()
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		done := make(chan error, 1)
		go func() { done <- l.Disconnect(ctx) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: disconnect: %v", round, err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("round %d: Disconnect hung while devices left", round)
		}
		cancel()
		wg.Wait()
	}
}

// stuckUplink blocks every delivery until released, ignoring ctx: a
// misbehaving pipeline.
type stuckUplink struct {
	entered chan struct{}
	release chan struct{}
}

func (u *stuckUplink) Deliver(_ context.Context, f *gateway.Frame) error {
	f.Release()
	select {
	case u.entered <- struct{}{}:
	default:
	}
	<-u.release
	return nil
}

// TestListenerDisconnectBoundedByContext: a session that cannot end (its
// delivery is stuck) makes Disconnect return the context's error when
// the context ends, instead of waiting forever.
func TestListenerDisconnectBoundedByContext(t *testing.T) {
	up := &stuckUplink{entered: make(chan struct{}, 1), release: make(chan struct{})}
	l, err := NewListener(WithListenAddress("127.0.0.1:0"), WithListenerLogger(conntest.QuietLogger()), devices[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Connect(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(connectPacket("raw-dev1", "dev1", "pw1")); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[3] != 0 {
		t.Fatalf("connack %x %v", ack, err)
	}
	if _, err := c.Write(publishPacket("devices/dev1/t", []byte("1"))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-up.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("publish never reached the uplink")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- l.Disconnect(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Disconnect = %v, want the context's deadline", err)
		}
	case <-time.After(5 * time.Second):
		close(up.release)
		t.Fatal("Disconnect ignored its context")
	}
	close(up.release)
}

// TestListenerDisconnectClosesConnectionsBeforeCONNECT: a connection that
// has not sent CONNECT yet does not hold Disconnect up until its connect
// timeout (10 s by default).
func TestListenerDisconnectClosesConnectionsBeforeCONNECT(t *testing.T) {
	l, err := NewListener(WithListenAddress("127.0.0.1:0"), WithListenerLogger(conntest.QuietLogger()), devices[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Connect(context.Background(), conntest.NewCollector()); err != nil {
		t.Fatal(err)
	}
	mute, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer mute.Close()
	time.Sleep(50 * time.Millisecond) // accepted and waiting for CONNECT
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := l.Disconnect(ctx); err != nil {
		t.Fatalf("Disconnect with a connection before CONNECT: %v", err)
	}
	_ = mute.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := mute.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("connection still open after Disconnect: %v", err)
	}
}
