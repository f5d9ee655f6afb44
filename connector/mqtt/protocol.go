package mqtt

import (
	"context"
	"io"
	"log/slog"
	"net"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// What the listener tells MQTT 5 devices in CONNACK, and how it treats
// retained messages and packets over the size limit. See the package
// documentation (Retain, Packet size).

// connackProperties are the properties of a successful MQTT 5 CONNACK:
// the largest packet the listener accepts, and that it keeps no retained
// messages. (The broker adds Receive Maximum.)
func (l *Listener) connackProperties() *packets.Properties {
	return &packets.Properties{
		MaximumPacketSize:   l.s.maxPacket,
		RetainAvailable:     0,
		RetainAvailableFlag: true,
	}
}

// checkRetain applies the retain rule to a packet a device sent: the
// gateway keeps no retained messages. An MQTT 5 device was told so in
// CONNACK, so a retained PUBLISH is a protocol error ending the session
// with "retain not supported"; MQTT 3.1.1 has no way to say
// so, and its retained PUBLISH is taken as an ordinary one.
func (l *Listener) checkRetain(cl *mochi.Client, ss *session, pk *packets.Packet) error {
	if pk.FixedHeader.Type != packets.Publish || !pk.FixedHeader.Retain {
		return nil
	}
	if cl.Properties.ProtocolVersion < 5 {
		pk.FixedHeader.Retain = false
		return nil
	}
	ss.stats.Error()
	l.stats.Total.Error()
	l.logRepeat(slog.LevelWarn, "retain:"+ss.device, "mqtt retained PUBLISH refused; session closed",
		"device", ss.device, "topic", pk.TopicName)
	return packets.ErrRetainNotSupported
}

// How long, and for how many bytes, a session closed for an oversized
// packet goes on reading what the device still sends.
const (
	lingerFor   = time.Second
	lingerBytes = 1 << 20
)

// oversized ends a session whose device sent a packet over the size limit
// (the Reader's error err): counted as Oversized, logged (one line per
// device per log interval), and an MQTT 5 device gets DISCONNECT "packet
// too large". The connection is then half-closed and what the device
// still sends (the rest of the packet) is read and discarded for up to a
// second, so that the device reads the DISCONNECT and an orderly close
// instead of a connection reset.
func (l *Listener) oversized(cl *mochi.Client, ss *session, err error) {
	ss.stats.Oversized()
	l.stats.Total.Oversized()
	l.logRepeat(slog.LevelWarn, "oversize:"+ss.device, "mqtt packet over the size limit; session closed",
		"device", ss.device, "limit", l.s.maxPacket, "err", err)
	if cl.Properties.ProtocolVersion == 5 {
		_ = cl.WritePacket(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
			ReasonCode:  packets.ErrPacketTooLarge.Code,
		})
	}
	linger(cl.Net.Conn)
}

// linger half-closes conn and discards what the peer still sends, until
// it closes its side, lingerFor passes or lingerBytes were read. Closing a
// socket with unread bytes makes the kernel answer with a reset, which can
// destroy data the peer has not read yet (the DISCONNECT).
func linger(conn net.Conn) {
	if conn == nil {
		return
	}
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = conn.SetDeadline(time.Now().Add(lingerFor))
	_, _ = io.CopyN(io.Discard, conn, lingerBytes)
}

// logRepeat logs one line per cause (key) per log interval; the next line
// of a cause says how many were suppressed.
func (l *Listener) logRepeat(level slog.Level, key, msg string, args ...any) {
	l.logs.Load().Log(context.Background(), l.s.logger, level, key, msg, args...)
}
