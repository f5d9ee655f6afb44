package coap

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

// rawPeer is a device socket speaking raw CoAP to the connector.
func rawPeer(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// roundTrip sends d and returns the next datagram, or nil after wait.
func roundTrip(t *testing.T, conn *net.UDPConn, d []byte, wait time.Duration) []byte {
	t.Helper()
	if _, err := conn.Write(d); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 1500)
	n, err := conn.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// fastPathUsed fails t unless the fast path answered requests; it
// returns how many retransmissions it recognised.
func fastPathUsed(t *testing.T, c *Connector) uint64 {
	t.Helper()
	c.mu.Lock()
	f := c.front
	c.mu.Unlock()
	if f == nil || f.cache.len() == 0 {
		t.Fatal("the fast path did not answer")
	}
	return f.dups.Load()
}

// TestFastPathLibcoap: coap-client's CON and NON POSTs are answered by
// the fast path: one frame each, 2.04.
func TestFastPathLibcoap(t *testing.T) {
	col := conntest.NewCollector()
	c, addr := start(t, col)
	for i, mode := range [][]string{{}, {"-N"}} {
		args := append(append([]string{}, mode...), "-m", "post", "-e", "v"+string(rune('0'+i)), "coap://"+addr+"/devices/fast/t")
		out, err := coapClient(t, args...)
		if err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
		col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) == i+1 })
	}
	fs := col.Frames()
	if len(fs) != 2 || string(fs[0].Payload) != "v0" || string(fs[1].Payload) != "v1" || fs[1].Device != "fast" || fs[1].Topic != "t" {
		t.Fatalf("frames %+v", fs)
	}
	fastPathUsed(t, c)
}

// TestFastPathLibcoapRetransmission: the pipeline holds the first frame
// past coap-client's ACK timeout, so coap-client retransmits; the
// retransmission is not delivered again and the client still gets 2.04.
func TestFastPathLibcoapRetransmission(t *testing.T) {
	col := conntest.NewCollector()
	c, addr := start(t, col, WithTimeouts(20*time.Second, 10*time.Second, 30*time.Second))
	release := col.Hold()
	done := make(chan struct{})
	var out string
	var err error
	go func() {
		defer close(done)
		out, err = coapClient(t, "-m", "post", "-e", "once", "coap://"+addr+"/devices/retx/t")
	}()
	time.Sleep(4 * time.Second) // libcoap retransmits after 2-3s
	release()
	<-done
	if err != nil {
		t.Fatalf("coap-client: %v %s", err, out)
	}
	time.Sleep(200 * time.Millisecond)
	if fs := col.Frames(); len(fs) != 1 || string(fs[0].Payload) != "once" {
		t.Fatalf("frames %+v, want exactly one", fs)
	}
	if dups := fastPathUsed(t, c); dups == 0 {
		t.Fatal("coap-client did not retransmit while the frame was held")
	}
}

// TestFastPathDuplicates: a retransmitted CON gets the same answer and
// no second frame; a duplicate NON is ignored.
func TestFastPathDuplicates(t *testing.T) {
	col := conntest.NewCollector()
	_, addr := start(t, col)
	conn := rawPeer(t, addr)
	con := rawPost("dup", []byte("1"))
	con[2], con[3] = 0x12, 0x34
	first := roundTrip(t, conn, con, 2*time.Second)
	second := roundTrip(t, conn, con, 2*time.Second)
	want := []byte{0x62, codeChanged, 0x12, 0x34, 0xbe, 0xef}
	if !bytes.Equal(first, want) || !bytes.Equal(second, want) {
		t.Fatalf("answers % x and % x, want % x twice", first, second, want)
	}
	non := rawPost("dup", []byte("2"))
	non[0] = 0x52 // NON, TKL 2
	non[2], non[3] = 0x12, 0x35
	if a := roundTrip(t, conn, non, 2*time.Second); len(a) < 4 || a[0]>>4&3 != typeNON || a[1] != codeChanged {
		t.Fatalf("NON answer % x", a)
	}
	if a := roundTrip(t, conn, non, 300*time.Millisecond); a != nil {
		t.Fatalf("duplicate NON answered % x", a)
	}
	time.Sleep(100 * time.Millisecond)
	if fs := col.Frames(); len(fs) != 2 || string(fs[0].Payload) != "1" || string(fs[1].Payload) != "2" {
		t.Fatalf("frames %+v, want 1 and 2 once each", fs)
	}
}

// TestFastPathRefused: a refused frame gets 5.03 with Max-Age 1 and a
// reason, and so does its retransmission, with nothing delivered.
func TestFastPathRefused(t *testing.T) {
	col := conntest.NewCollector()
	col.Refuse(gateway.ErrDropped)
	c, addr := start(t, col)
	out, _ := coapClient(t, "-m", "post", "-e", "x", "coap://"+addr+"/devices/d/t")
	if !strings.Contains(out, "5.03") || !strings.Contains(out, "queue full") {
		t.Fatalf("coap-client output %q, want 5.03 queue full", out)
	}
	conn := rawPeer(t, addr)
	req := rawPost("d", []byte("x"))
	for range 2 {
		a := roundTrip(t, conn, req, 2*time.Second)
		want := appendResponse(nil, typeACK, codeServiceUnavail, 0, []byte{0xbe, 0xef}, true, "gateway queue full")
		if !bytes.Equal(a, want) {
			t.Fatalf("answer % x, want % x", a, want)
		}
	}
	if col.Len() != 0 || c.Stats().Devices["d"].Errors != 2 {
		t.Fatalf("frames %d, stats %+v", col.Len(), c.Stats().Devices["d"])
	}
}

// TestFastPathMalformed: malformed datagrams are counted, a malformed
// CON gets a Reset, and a device is still served afterwards.
func TestFastPathMalformed(t *testing.T) {
	col := conntest.NewCollector()
	c, addr := start(t, col)
	conn := rawPeer(t, addr)
	tests := []struct {
		name  string
		d     []byte
		reset bool
	}{
		{"short", []byte{0x40, 0x02}, false},
		{"version 2", []byte{0x80, 0x02, 0, 1}, false},
		{"token truncated", []byte{0x48, 0x02, 0, 2, 1, 2}, true},
		{"reserved delta", []byte{0x40, 0x02, 0, 3, 0xf1, 0}, true},
		{"marker without payload", []byte{0x40, 0x02, 0, 4, 0xff}, true},
		{"option past end", []byte{0x40, 0x02, 0, 5, 0xb5, 'a'}, true},
		{"NON malformed", []byte{0x50, 0x02, 0, 6, 0xff}, false},
	}
	for _, tt := range tests {
		a := roundTrip(t, conn, tt.d, 300*time.Millisecond)
		if tt.reset && (len(a) != 4 || a[0] != 0x70 || a[2] != tt.d[2] || a[3] != tt.d[3]) {
			t.Errorf("%s: answer % x, want a Reset", tt.name, a)
		}
		if !tt.reset && a != nil {
			t.Errorf("%s: answer % x, want none", tt.name, a)
		}
	}
	if got := c.Stats().Total.Malformed; got != uint64(len(tests)) {
		t.Errorf("malformed = %d, want %d", got, len(tests))
	}
	if out, err := coapClient(t, "-m", "post", "-e", "ok", "coap://"+addr+"/devices/dev1/t"); err != nil {
		t.Fatalf("after garbage: %v %s", err, out)
	}
	col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) == 1 })
}

// TestGoCoAPPathStillServes: with the fast path off, go-coap answers
// the same requests.
func TestGoCoAPPathStillServes(t *testing.T) {
	col := conntest.NewCollector()
	_, addr := start(t, col, WithFastPath(false))
	if out, err := coapClient(t, "-m", "post", "-e", "slow", "coap://"+addr+"/devices/s/t"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) == 1 && string(fs[0].Payload) == "slow" })
}

// TestFastPathDeliverTimeout: a pipeline that does not decide within the
// deliver timeout gets the device a 5.03, and the frame is not taken.
func TestFastPathDeliverTimeout(t *testing.T) {
	col := conntest.NewCollector()
	release := col.Hold()
	defer release()
	_, addr := start(t, col, WithTimeouts(200*time.Millisecond, 10*time.Second, 30*time.Second))
	conn := rawPeer(t, addr)
	start := time.Now()
	a := roundTrip(t, conn, rawPost("slow", []byte("x")), 3*time.Second)
	if len(a) < 6 || a[1] != codeServiceUnavail || !bytes.Contains(a, []byte("deadline exceeded")) {
		t.Fatalf("answer % x (%q), want 5.03 deadline exceeded", a, a)
	}
	if el := time.Since(start); el < 200*time.Millisecond {
		t.Fatalf("answered after %v, before the deliver timeout", el)
	}
	if col.Len() != 0 {
		t.Fatal("frame taken")
	}
}
