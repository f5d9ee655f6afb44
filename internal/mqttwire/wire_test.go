package mqttwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// connect5 is an MQTT 5 CONNECT with clean start and no properties.
func connect5(id string) []byte {
	v := appendString(nil, "MQTT")
	v = append(v, 5, 0x02, 0, 60, 0)
	v = appendString(v, id)
	return AppendPacket(nil, 0x10, v)
}

func publish(topic, payload string) []byte {
	return AppendPacket(nil, 0x30, append(appendString(nil, topic), payload...))
}

// badSubscribe5 is an MQTT 5 SUBSCRIBE whose filter lacks its options
// byte: mochi-mqtt v2.7.9's decoder indexes past its end.
var badSubscribe5 = []byte{0x82, 0x06, 0x00, 0x01, 0x00, 0x00, 0x01, 'a'}

func TestParseRemainingLength(t *testing.T) {
	for _, tc := range []struct {
		in         []byte
		n, used    int
		done, fail bool
	}{
		{in: []byte{0x30}, done: false},
		{in: []byte{0x30, 0}, n: 0, used: 2, done: true},
		{in: []byte{0x30, 0x7f}, n: 127, used: 2, done: true},
		{in: []byte{0x30, 0x80, 0x01}, n: 128, used: 3, done: true},
		{in: []byte{0x30, 0x80}, done: false},
		{in: []byte{0x30, 0xff, 0xff, 0xff, 0x7f}, n: 268435455, used: 5, done: true},
		{in: []byte{0x30, 0xff, 0xff, 0xff, 0xff}, done: false},
		{in: []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, fail: true},
	} {
		n, used, done, err := ParseRemainingLength(tc.in)
		if (err != nil) != tc.fail || done != tc.done || n != tc.n || used != tc.used {
			t.Errorf("%x: got %d %d %v %v, want %d %d %v fail=%v", tc.in, n, used, done, err, tc.n, tc.used, tc.done, tc.fail)
		}
	}
}

func TestDecodeFaultIsMalformed(t *testing.T) {
	pk := packets.Packet{ProtocolVersion: 5}
	err := Decode(&pk, badSubscribe5[0], badSubscribe5[2:])
	if !errors.Is(err, packets.ErrMalformedPacket) || !strings.Contains(err.Error(), "decoder fault") {
		t.Fatalf("err %v, want a malformed packet from a decoder fault", err)
	}
	pk = packets.Packet{ProtocolVersion: 4}
	if err := Decode(&pk, 0x20, []byte{0, 0}); !errors.Is(err, packets.ErrProtocolViolation) {
		t.Fatalf("CONNACK from a client: %v", err)
	}
}

// TestReaderLargeBody: a body far larger than the buffer, arriving in
// pieces, comes out whole and the packet after it too.
func TestReaderLargeBody(t *testing.T) {
	payload := strings.Repeat("x", 100<<10)
	stream := append(publish("a", payload), publish("b", "y")...)
	rd := NewReader(&byteConn{data: stream, chunk: 1000}, 64, 0)
	first, body, err := rd.Next()
	if err != nil || first != 0x30 || len(body) != 3+len(payload) {
		t.Fatalf("first packet: %x %d %v", first, len(body), err)
	}
	if _, body, err = rd.Next(); err != nil || string(body[3:]) != "y" {
		t.Fatalf("second packet: %q %v", body, err)
	}
	if _, _, err := rd.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the stream: %v", err)
	}
	rd = NewReader(&byteConn{data: stream, chunk: 7}, 64, 1024)
	if _, _, err := rd.Next(); !errors.Is(err, packets.ErrPacketTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
}

// TestReaderReleasesBuffer: once the buffered packets are taken the
// Reader holds no buffer; a packet split across reads and a burst of
// packets in one read come out whole, and Ready tells when Next would not
// read.
func TestReaderReleasesBuffer(t *testing.T) {
	a, b := publish("a/b", strings.Repeat("p", 40)), publish("c", "q")
	conn := &byteConn{data: append(append(append([]byte{}, a...), b...), a...), chunk: len(a) + len(b) + 5}
	rd := NewReader(conn, 256, 0)
	if rd.Buffered() || rd.Ready() {
		t.Fatal("new Reader: something buffered")
	}
	if err := rd.Wait(); err != nil {
		t.Fatal(err)
	}
	if conn.reads != 2 || !rd.Ready() {
		t.Fatalf("after Wait: %d reads, ready %v; want 2 reads (16 bytes, then the rest) and ready", conn.reads, rd.Ready())
	}
	for i, want := range [][]byte{a, b} {
		first, body, err := rd.Next()
		if err != nil || !bytes.Equal(AppendPacket(nil, first, body), want) {
			t.Fatalf("packet %d: %x %v", i, body, err)
		}
	}
	if conn.reads != 2 {
		t.Fatalf("%d reads for two buffered packets, want 2", conn.reads)
	}
	if !rd.Buffered() || rd.Ready() || rd.buf == nil {
		t.Fatal("the start of the third packet is buffered, not whole")
	}
	if first, body, err := rd.Next(); err != nil || !bytes.Equal(AppendPacket(nil, first, body), a) {
		t.Fatalf("third packet: %x %v", body, err)
	}
	if rd.buf != nil || rd.Buffered() {
		t.Fatal("the buffer is held with nothing buffered")
	}
	if _, _, err := rd.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the stream: %v", err)
	}
}

// TestGuard: through a guarded listener, good packets arrive byte for
// byte; the first that does not decode ends the connection.
func TestGuard(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := Guard(ln, 0)
	defer g.Close()
	// MQTT 5 PUBLISH: topic, no properties, payload.
	pub5 := AppendPacket(nil, 0x30, append(append(appendString(nil, "t/1"), 0), "hello"...))
	good := append(connect5("c1"), pub5...)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write(append(append([]byte{}, good...), badSubscribe5...))
		_, _ = io.Copy(io.Discard, c)
	}()
	c, err := g.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err == nil || !errors.Is(err, packets.ErrMalformedPacket) {
		t.Fatalf("read ended with %v, want the malformed SUBSCRIBE", err)
	}
	if !bytes.Equal(got, good) {
		t.Fatalf("passed %x, want %x", got, good)
	}
}

// byteConn is a net.Conn that reads from a byte slice in chunks.
type byteConn struct {
	net.Conn
	data  []byte
	chunk int
	reads int
}

func (c *byteConn) Read(b []byte) (int, error) {
	c.reads++
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(b), c.chunk, len(c.data))
	copy(b, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func (c *byteConn) SetDeadline(time.Time) error { return nil }

// FuzzReader feeds arbitrary bytes, in arbitrary chunk sizes, through the
// reader and the decoder: no panic, every packet returned is within the
// size limit, and a packet re-encoded reads back the same.
func FuzzReader(f *testing.F) {
	f.Add(connect5("c"), uint8(7))
	f.Add(append(publish("a/b", "hello"), 0x82, 0x04, 0x00, 0x01, 0x00, 0x10), uint8(1))
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}, uint8(3))
	f.Add(badSubscribe5, uint8(200))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		conn := &byteConn{data: data, chunk: 1 + int(chunk)}
		rd := NewReader(conn, 16, 4096)
		for range 64 {
			ready, reads := rd.Ready(), conn.reads
			first, body, err := rd.Next()
			if ready && conn.reads != reads {
				t.Fatalf("Next read from the connection after Ready")
			}
			if err != nil {
				return
			}
			if len(body)+2 > 4096 {
				t.Fatalf("%d byte body past the limit", len(body))
			}
			again := NewReader(&byteConn{data: AppendPacket(nil, first, body), chunk: 5}, 16, 0)
			if f2, b2, err := again.Next(); err != nil || f2 != first || !bytes.Equal(b2, body) {
				t.Fatalf("re-encoded packet reads back as %x %x %v", f2, b2, err)
			}
			for _, v := range []byte{3, 4, 5} {
				pk := packets.Packet{ProtocolVersion: v}
				_ = Decode(&pk, first, body)
			}
		}
	})
}
