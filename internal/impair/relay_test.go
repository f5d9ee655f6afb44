package impair

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"
)

func TestRelayDelaysReordersKeepsDSCP(t *testing.T) {
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	in, out, dst, src := listen(), listen(), listen(), listen()
	if err := EnableDSCP(dst); err != nil {
		t.Fatal(err)
	}
	r := NewRelay(in, out, dst.LocalAddr().(*net.UDPAddr).AddrPort(),
		RelayConfig{Delay: 30 * time.Millisecond, Jitter: 10 * time.Millisecond, Reorder: 0.25, Seed: 7})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := r.Run(ctx); err != nil {
			t.Errorf("relay: %v", err)
		}
	}()
	defer func() { cancel(); wg.Wait() }()

	const n = 200
	type arrival struct {
		i        int
		dscp     uint8
		sentDSCP uint8
		at       time.Time
	}
	arrivals := make(chan arrival, n)
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		defer close(arrivals)
		buf := make([]byte, 64)
		dst.SetReadDeadline(time.Now().Add(3 * time.Second))
		for range n {
			m, dscp, _, err := ReadDSCP(dst, buf)
			if err != nil || m != 16 {
				t.Errorf("read: %d bytes, %v", m, err)
				return
			}
			arrivals <- arrival{int(binary.BigEndian.Uint64(buf)), dscp, buf[8], time.Now()}
		}
	}()
	to := in.LocalAddr().(*net.UDPAddr).AddrPort()
	sentAt := make([]time.Time, n)
	for i := range n {
		b := make([]byte, 16)
		binary.BigEndian.PutUint64(b, uint64(i))
		dscp := uint8(46)
		if i%2 == 1 {
			dscp = 10
		}
		b[8] = dscp
		sentAt[i] = time.Now()
		if err := WriteDSCP(src, b, dscp, to); err != nil {
			t.Errorf("send: %v", err)
			break
		}
		time.Sleep(200 * time.Microsecond)
	}
	rwg.Wait()
	var got, reordered, immediate, delayed int
	last := -1
	for a := range arrivals {
		if a.dscp != a.sentDSCP {
			t.Errorf("datagram %d arrived with DSCP %d, sent %d", a.i, a.dscp, a.sentDSCP)
		}
		d := a.at.Sub(sentAt[a.i])
		switch {
		case d < 10*time.Millisecond:
			immediate++
		case d >= 19*time.Millisecond:
			delayed++
		}
		if a.i < last {
			reordered++
		}
		last = max(last, a.i)
		got++
	}
	if got != n {
		t.Fatalf("%d of %d datagrams arrived", got, n)
	}
	t.Logf("%d datagrams: %d sent at once, %d delayed >= 19ms, %d overtaken", n, immediate, delayed, reordered)
	if immediate < n/10 || immediate > n/2 {
		t.Errorf("%d of %d sent at once, want about 25%%", immediate, n)
	}
	if delayed < n/2 {
		t.Errorf("only %d of %d delayed by >= 19ms (30ms +- 10ms)", delayed, n)
	}
	if reordered == 0 {
		t.Error("nothing reordered")
	}
}
