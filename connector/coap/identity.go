package coap

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"slices"

	"github.com/iotgw/gateway/dtlsx"
	"github.com/pion/dtls/v3"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

// CoAP codes of refused credentials.
const (
	codeUnauthorized = 0x81 // 4.01
	codeForbidden    = 0x83 // 4.03
)

// peerAuth is what a secured session's handshake proved about the peer.
type peerAuth struct {
	identity string // PSK identity or client certificate subject CN; "" when anonymous
	kind     string // "psk", "cert" or "anonymous"
}

// authKey is the go-coap session context key of a *peerAuth.
type authKey struct{}

// stateConn is a conn that ran a DTLS handshake: *dtls.Conn and
// *dtlsx.Conn.
type stateConn interface {
	ConnectionState() (dtls.State, bool)
}

// connAuth returns what the handshake of nc proved, or nil when nc is not
// a DTLS conn (plain UDP, or a ConnListener without handshake state): the
// transport then authenticates nobody and the path names the device.
func connAuth(nc net.Conn) *peerAuth {
	sc, ok := nc.(stateConn)
	if !ok {
		return nil
	}
	a := &peerAuth{kind: "anonymous"}
	st, ok := sc.ConnectionState()
	if !ok {
		return a
	}
	switch {
	case len(st.IdentityHint) > 0: // on a server: the client's psk_identity
		a.identity, a.kind = string(st.IdentityHint), "psk"
	case len(st.PeerCertificates) > 0:
		// The listener verified the chain (dtlsx.WithClientCAs) before
		// the handshake completed.
		if cert, err := x509.ParseCertificate(st.PeerCertificates[0]); err == nil && cert.Subject.CommonName != "" {
			a.identity, a.kind = cert.Subject.CommonName, "cert"
		}
	}
	return a
}

// rememberAuth stores what the handshake proved on a new go-coap session,
// before it serves its first request.
func rememberAuth(cc *udpclient.Conn) {
	if a := connAuth(cc.NetConn()); a != nil {
		cc.SetContextValue(authKey{}, a)
	}
}

// authorize decides whether a peer may send as device: an authenticated
// identity is the device of the same name unless WithIdentityDevices lists
// the devices it may send as; an anonymous DTLS peer only with
// WithAnonymousDTLS. A nil a (unsecured transport) is not checked. A
// refusal is counted (Total Denied and Errors) and logged once per
// identity and device a minute.
func (c *Connector) authorize(a *peerAuth, device string) (outcome, bool) {
	if a == nil {
		return outcome{}, true
	}
	if a.identity == "" {
		if c.s.anonymousDTLS {
			return outcome{}, true
		}
		c.deny(a, device)
		return outcome{code: codeUnauthorized, reason: "no identity: use a PSK or a client certificate"}, false
	}
	if devs, ok := c.s.identities[a.identity]; ok {
		if slices.Contains(devs, device) {
			return outcome{}, true
		}
	} else if a.identity == device {
		return outcome{}, true
	}
	c.deny(a, device)
	return outcome{code: codeForbidden, reason: fmt.Sprintf("identity %q may not send as device %q", a.identity, device)}, false
}

func (c *Connector) deny(a *peerAuth, device string) {
	c.stats.Total.Denied()
	c.stats.Total.Error()
	if ok, suppressed := c.denyLog.Allow(a.kind + ":" + a.identity + "/" + device); ok {
		c.s.logger.Warn("coap: device refused for its DTLS identity", "identity", a.identity,
			"kind", a.kind, "device", device, "suppressed", suppressed)
	}
}

// sessionStore is the persistent DTLS session cache of WithDTLSSessionStore.
type sessionStore struct {
	db    *dtlsx.SQLiteStore
	cache *dtlsx.SessionCache
}

func openSessionStore(ctx context.Context, path string, ring *dtlsx.KeyRing, log *slog.Logger, opts []dtlsx.CacheOption) (*sessionStore, error) {
	db, err := dtlsx.OpenSQLiteStore(ctx, path)
	if err != nil {
		return nil, err
	}
	if _, err := db.DeleteExpired(ctx); err != nil {
		log.Warn("coap: dropping expired DTLS sessions", "err", err)
	}
	opts = append([]dtlsx.CacheOption{dtlsx.WithPersistentStore(db, ring), dtlsx.WithCacheLogger(log)}, opts...)
	cache, err := dtlsx.NewSessionCache(opts...)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("dtls session store %s: %w", path, err)
	}
	return &sessionStore{db: db, cache: cache}, nil
}

// close flushes queued session writes and closes the database.
func (s *sessionStore) close() {
	if s == nil {
		return
	}
	_ = s.cache.Close()
	_ = s.db.Close()
}
