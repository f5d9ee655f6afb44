package mqtt

import (
	"bytes"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/mochi-mqtt/server/v2/packets"
)

// encode encodes a packet a test client sends, for protocol version v.
func encode(t *testing.T, pk packets.Packet, v byte) []byte {
	t.Helper()
	pk.ProtocolVersion = v
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	default:
		t.Fatalf("encode: type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// connectV5 is an MQTT 5 CONNECT with a username and password.
func connectV5(clientID, user, pass string) packets.Packet {
	return packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: 5,
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 60,
			ClientIdentifier: clientID, UsernameFlag: true, Username: []byte(user),
			PasswordFlag: true, Password: []byte(pass),
		},
	}
}

// readV5 reads and decodes one packet a server sent to an MQTT 5 client.
func readV5(t *testing.T, c net.Conn) packets.Packet {
	t.Helper()
	first, body, err := readPacket(c, 5*time.Second)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	pk := packets.Packet{ProtocolVersion: 5}
	if err := pk.FixedHeader.Decode(first); err != nil {
		t.Fatal(err)
	}
	pk.FixedHeader.Remaining = len(body)
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	default:
		t.Fatalf("unexpected packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		t.Fatalf("decode type %d: %v", pk.FixedHeader.Type, err)
	}
	return pk
}

// sessionV5 connects an MQTT 5 client and returns its connection and the
// CONNACK.
func sessionV5(t *testing.T, addr string, pk packets.Packet) (net.Conn, packets.Packet) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(encode(t, pk, 5)); err != nil {
		t.Fatal(err)
	}
	ack := readV5(t, c)
	if ack.FixedHeader.Type != packets.Connack {
		t.Fatalf("got packet type %d, want CONNACK", ack.FixedHeader.Type)
	}
	return c, ack
}

// TestListenerPubackV5: a QoS 1 PUBLISH with a user property gets a
// PUBACK with reason 0x00 and no properties (the broker alone answers
// 0x01, a SUBACK code, and echoes the user property).
func TestListenerPubackV5(t *testing.T) {
	col := conntest.NewCollector()
	_, h, p := startListener(t, col, devices...)
	c, ack := sessionV5(t, net.JoinHostPort(h, p), connectV5("v5-ack", "dev1", "pw1"))
	if ack.ReasonCode != 0 {
		t.Fatalf("connack reason %#x", ack.ReasonCode)
	}
	pub := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   "devices/dev1/t", PacketID: 9, Payload: []byte("21"),
		Properties: packets.Properties{User: []packets.UserProperty{{Key: "traceparent", Val: "00-abc-def-01"}}},
	}
	if _, err := c.Write(encode(t, pub, 5)); err != nil {
		t.Fatal(err)
	}
	first, body, err := readPacket(c, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// PUBACK, remaining length 2 or 3: packet id, then reason 0x00 or
	// nothing (which means 0x00); no property block.
	if first != 0x40 || !(bytes.Equal(body, []byte{0, 9}) || bytes.Equal(body, []byte{0, 9, 0})) {
		t.Fatalf("PUBACK %#x % x, want 0x40 00 09 [00]", first, body)
	}
	col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) == 1 })
}

// TestListenerPubackMosquitto: mosquitto_pub over MQTT 5 with a user
// property sees PUBACK reason 0.
func TestListenerPubackMosquitto(t *testing.T) {
	col := conntest.NewCollector()
	_, h, p := startListener(t, col, devices...)
	out, err := mosq(t, "mosquitto_pub", "-h", h, "-p", p, "-u", "dev1", "-P", "pw1", "-V", "mqttv5", "-q", "1", "-d",
		"-D", "publish", "user-property", "traceparent", "00-abc-def-01", "-t", "devices/dev1/t", "-m", "21")
	if err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	m := regexp.MustCompile(`received PUBACK \(Mid: \d+, RC:(\d+)\)`).FindStringSubmatch(out)
	if m == nil || m[1] != "0" {
		t.Fatalf("PUBACK reason in debug output: %q, want RC:0", strings.TrimSpace(out))
	}
	col.WaitFor(t, 5*time.Second, "frame", func(fs []gateway.Frame) bool { return len(fs) == 1 })
}
