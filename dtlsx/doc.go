// Package dtlsx serves and dials DTLS 1.2 for device transports such as
// CoAP over DTLS (coaps), on top of github.com/pion/dtls/v3.
//
// The happy path:
//
//	l, err := dtlsx.Listen("udp", ":5684", dtlsx.WithCertificate(cert), dtlsx.WithPSK(psks))
//	conn, err := l.Accept() // established: a *dtls.Conn, or a *dtlsx.Conn for a resumed session
//	c, err := dtlsx.Dial(ctx, "udp", "gw:5684", dtlsx.WithClientPSK(id, key))
//
// What it adds to pion:
//
//   - Its own datagram routing in front of pion (by address and by RFC 9146
//     connection id), so that a device rebooting behind the same ip:port
//     gets a new association as soon as its new handshake completes
//     (RFC 6347 4.2.8), instead of being ignored until the old one times out.
//   - Handshake admission: at most WithMaxFullHandshakes certificate
//     handshakes past the cookie exchange at once (the rest wait in arrival
//     order), a bound on half-open associations, and a per-source-IP rate
//     of new associations. Resumptions and established traffic never wait
//     for those slots. Handshake steps (parsing a flight and computing the
//     answer) run on at most WithHandshakeWorkers associations at once.
//     While established sessions carry traffic, both bounds tighten by
//     default (one fewer worker than GOMAXPROCS, 4 slots per worker) so
//     that their records keep a core during a reconnect storm. Where the
//     workers could still hold every processor (GOMAXPROCS 1), a freed
//     worker waits until the Go scheduler has polled the network, so
//     records are routed between two handshake steps.
//   - Resumption through a SessionCache: an LRU with TTL in memory in front
//     of an optional PersistentStore (SQLiteStore by default) shared across
//     restarts and gateway instances. Stored sessions are sealed with
//     AES-GCM under a rotating KeyRing, so a copy of the store leaks no
//     master secret. A failing store is a cache miss (counted and logged),
//     never a failed handshake. Revoke drops every session of an identity.
//   - Resumptions it can serve skip the HelloVerifyRequest round trip
//     (RFC 6347 4.2.1 allows it); every other ClientHello must return a
//     cookie first.
//   - It runs those abbreviated handshakes itself (WithFastResumption, on
//     by default): ServerHello, ChangeCipherSpec and Finished in one
//     datagram, the client's Finished checked in constant time. The
//     resumed connection's records stay in dtlsx too (WithOwnRecords, on
//     by default: a *dtlsx.Conn with a replay window, connection-id
//     address updates and close_notify), which spares building a pion
//     Conn; with it off the state is handed to pion
//     (dtls.ResumeWithOptions). AEAD suites (GCM, CCM, CCM_8,
//     ChaCha20-Poly1305), extended_master_secret and connection ids
//     included; anything else goes through pion's handshake unchanged.
//   - PSK identities from a PSKTable (memory or file), SQLiteStore or a
//     PSKFunc; the server can send an identity hint. A device with the
//     wrong key gets a bad_record_mac alert as soon as its Finished fails
//     to decrypt (pion alone drops it silently and the device times out).
//   - Counters for every outcome (Listener.Stats, SessionCache.Stats).
//   - On Linux the listener reads up to WithUDPBatch datagrams (default 16)
//     per recvmmsg into its pooled buffers, without an allocation per
//     datagram; writes go out one per call from each association.
//
// Closing a Listener closes every association on its socket.
//
// # Reconnect storms and the garbage collector
//
// During a storm of full handshakes, what still delays established
// records is the garbage collector: pion allocates about 60 KB per full
// handshake on the server, and on a single core each GC cycle's marking
// runs ahead of the network poller. A gateway that expects such storms
// can trade memory for latency with the runtime's own settings, for
// example GOGC=400 with GOMEMLIMIT as a cap (BENCHMARKS.md, "Reconnect
// storm", has the measurements). Resumptions allocate far less and are
// not affected.
package dtlsx
