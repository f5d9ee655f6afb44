package mqtt

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

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
