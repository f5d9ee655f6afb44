package mqtt

import (
	"bytes"
	"crypto/tls"
	"slices"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/lograte"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

var _ gateway.Reconfigurer = (*Listener)(nil)

// Reconfigure implements gateway.Reconfigurer: a reload that changes the
// listener's devices, ACLs, anonymous access, session limit, timeouts,
// command topic or log interval applies them in place, and connected devices stay
// connected. A changed listen address or TLS identity (certificate, client
// CA, client authentication), a WithNetListener listener or a changed
// WithSessionLimits needs a new listener: Reconfigure returns false and the
// gateway restarts the connector, dropping its sessions.
//
// Connected devices are checked against the new settings at once:
//
//   - a device whose username was removed, or whose password or device id
//     changed, is disconnected (MQTT 5: DISCONNECT "not authorized");
//     anonymous devices are disconnected when anonymous access is turned
//     off. Its will is not published and its persistent session is
//     dropped;
//   - every other device keeps its session, and its new ACL applies from
//     its next packet on: a PUBLISH is checked against the new publish
//     filters, and commands reach its existing subscriptions only where
//     the new subscribe filters allow them;
//   - a lower session limit refuses new sessions until the count is below
//     it; no connected device is dropped for it.
//
// next must be a *Listener that was never connected (the gateway passes
// the one its factory built from the changed configuration); it is not
// used afterwards. The listener's logger stays as it is.
func (l *Listener) Reconfigure(next gateway.DeviceConnector) bool {
	n, ok := next.(*Listener)
	if !ok || n == l || !l.s.sameTransport(&n.s) {
		return false
	}
	cur := *n.live.Load()
	cur.logger = l.s.logger

	l.reconf.Lock()
	prev := l.live.Swap(&cur)
	var revoked []*mochi.Client
	l.sessions.Range(func(k, v any) bool {
		ss := v.(*session)
		if !cur.stillAuthorized(prev, ss) {
			ss.revoked.Store(true)
			revoked = append(revoked, k.(*mochi.Client))
			l.s.logger.Info("mqtt device disconnected: its credentials were removed or changed", "device", ss.device)
			return true
		}
		ss.acl.Store(cur.aclFor(ss))
		return true
	})
	l.reconf.Unlock()

	// Outside the lock: a write to a slow device must not hold up
	// connecting devices.
	for _, cl := range revoked {
		if cl.Properties.ProtocolVersion == 5 {
			_ = cl.WritePacket(packets.Packet{
				FixedHeader: packets.FixedHeader{Type: packets.Disconnect},
				ReasonCode:  packets.ErrNotAuthorized.Code,
			})
		}
		cl.Stop(packets.ErrNotAuthorized)
	}
	if cur.logEvery != prev.logEvery {
		l.logs.Store(lograte.New(cur.logEvery))
	}
	if cur.maxSessions != prev.maxSessions {
		l.checkFileLimit(cur.maxSessions)
	}
	return true
}

// stillAuthorized reports whether the device of ss, authenticated under
// prev, may stay connected under s.
func (s *listenerSettings) stillAuthorized(prev *listenerSettings, ss *session) bool {
	switch ss.authBy {
	case authPassword:
		was, now := prev.users[ss.login], s.users[ss.login]
		return now.Username != "" && now.Password == was.Password && now.Device == was.Device
	case authAnonymous:
		return s.anonymous
	}
	return true // a client certificate: the TLS identity is unchanged
}

// sameTransport reports whether s and o accept connections the same way:
// what Reconfigure cannot change in place.
func (s *listenerSettings) sameTransport(o *listenerSettings) bool {
	return s.addr == o.addr && s.listener == o.listener && sameTLS(s.tls, o.tls) &&
		s.writesPending == o.writesPending && s.readBuffer == o.readBuffer &&
		s.maxPacket == o.maxPacket && s.sessionExpiry == o.sessionExpiry
}

// sameTLS compares the parts of two server TLS configurations that the
// listener's configuration sets: certificates, client CA pool, client
// authentication and minimum version. Configurations with callbacks are
// the same only if they are the same value.
func sameTLS(a, b *tls.Config) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil || a.GetCertificate != nil || b.GetCertificate != nil || a.GetConfigForClient != nil || b.GetConfigForClient != nil ||
		a.VerifyPeerCertificate != nil || b.VerifyPeerCertificate != nil || a.VerifyConnection != nil || b.VerifyConnection != nil {
		return false
	}
	if a.ClientAuth != b.ClientAuth || a.MinVersion != b.MinVersion || a.MaxVersion != b.MaxVersion ||
		len(a.Certificates) != len(b.Certificates) || !slices.Equal(a.NextProtos, b.NextProtos) {
		return false
	}
	for i := range a.Certificates {
		if !slices.EqualFunc(a.Certificates[i].Certificate, b.Certificates[i].Certificate, bytes.Equal) {
			return false
		}
	}
	if (a.ClientCAs == nil) != (b.ClientCAs == nil) {
		return false
	}
	return a.ClientCAs == nil || a.ClientCAs.Equal(b.ClientCAs)
}
