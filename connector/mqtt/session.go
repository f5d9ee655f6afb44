package mqtt

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgw/gateway/internal/bufconn"
	"github.com/iotgw/gateway/internal/mqttwire"
)

// The Listener runs its own session loop on top of the embedded broker.
// The broker keeps what it is good at: topic matching, subscriptions,
// in-flight tracking and persistent sessions, reached through its
// exported API (NewClient, InjectPacket, SendConnack, Clients, Topics).
// The connection side is the connector's:
//
//   - one goroutine per session reads packets; it blocks in Read with a
//     few hundred bytes of stack and no read buffer (mqttwire.Reader
//     takes a pooled one when bytes arrive), and hands what it read to a
//     worker (workers.go) that decodes and processes it, so its stack
//     stays at the size it started with however deep the processing
//     goes. It starts after CONNACK, so the deeper reading of CONNECT
//     leaves nothing behind either;
//   - the broker's write loop (a second goroutine) starts only once the
//     session subscribes to something, because only subscriptions make the
//     broker queue packets for it; acknowledgements and pings are written
//     by the reading goroutine;
//   - the CONNECT packet has to arrive within WithConnectTimeout.

// listenerID names the device listener inside the embedded broker.
const listenerID = "devices"

// listenerRun is one Connect..Disconnect of a Listener.
type listenerRun struct {
	srv    *mochi.Server
	hook   *listenerHook
	ln     net.Listener
	cancel func()
	wg     sync.WaitGroup // the accept loop, sessions and write loops
	conns  sync.Map       // net.Conn -> struct{}: every connection served, before and after CONNECT
	work   *workers       // process what sessions read
	// swap orders session takeover against the end of the session taken
	// over.
	swap sync.Mutex
}

// acceptLoop serves connections until the listener closes.
func (l *Listener) acceptLoop(run *listenerRun) {
	defer run.wg.Done()
	run.work = newWorkers(run.hook.ctx.Done(), &run.wg)
	var delay time.Duration
	for {
		conn, err := run.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.s.logger.Warn("mqtt listener: accept failed; retrying", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		run.wg.Add(1)
		go l.serve(run, conn)
	}
}

// serve runs one device connection up to CONNACK and starts its session.
func (l *Listener) serve(run *listenerRun, conn net.Conn) {
	run.conns.Store(conn, struct{}{})
	rd := mqttwire.NewReader(conn, l.s.readBuffer, l.s.maxPacket)
	rd.Idle = l.live.Load().connectTimeout
	cl, ss, present := l.establish(run, conn, rd)
	if cl == nil {
		_ = conn.Close()
		run.conns.Delete(conn)
		run.wg.Done()
		return
	}
	err := run.srv.SendConnack(cl, packets.CodeSuccess, present, l.connackProperties())
	if err == nil && present {
		err = cl.ResendInflightMessages(true)
	}
	if err != nil {
		l.endSession(run, cl, ss, err)
		run.conns.Delete(conn)
		run.wg.Done()
		return
	}
	if cl.State.Subscriptions.Len() > 0 {
		l.startWriter(run, cl, ss)
	}
	// A new goroutine, with the starting stack size, takes over this
	// one's count of run.wg; this one ends with the stack CONNECT grew.
	go l.session(run, conn, cl, ss, rd)
}

// session reads the session's packets until it ends.
func (l *Listener) session(run *listenerRun, conn net.Conn, cl *mochi.Client, ss *session, rd *mqttwire.Reader) {
	err := l.readLoop(run, cl, ss, rd)
	l.endSession(run, cl, ss, err)
	run.conns.Delete(conn)
	run.wg.Done()
}

// readLoop waits for whole packets and has a worker process them until
// the session ends. It keeps its own frames small: it only ever blocks in
// Read or waits for the worker.
func (l *Listener) readLoop(run *listenerRun, cl *mochi.Client, ss *session, rd *mqttwire.Reader) error {
	for !cl.Closed() {
		err := rd.Wait()
		if err == nil {
			err = run.work.process(l, run, cl, ss, rd)
		}
		if err != nil {
			if errors.Is(err, packets.ErrPacketTooLarge) {
				l.oversized(cl, ss, err)
			}
			return err
		}
	}
	// Stopped while processing: by the device's DISCONNECT (a clean end),
	// or by the listener, for example after a refused QoS 1 frame.
	if cause := cl.StopCause(); cause != nil && !errors.Is(cause, packets.CodeDisconnect) {
		return cause
	}
	return nil
}

// handleBuffered processes the whole packets rd holds, without reading
// from the connection; it runs on a worker. The QoS 0 and 1 PUBLISHes
// among them are handed to the gateway a batch at a time (see
// deliverAhead), and what the broker writes meanwhile (their PUBACKs)
// goes out in one write when the buffer is done.
func (l *Listener) handleBuffered(run *listenerRun, cl *mochi.Client, ss *session, rd *mqttwire.Reader) (err error) {
	if ss.held != nil {
		ss.held.Hold()
		defer func() {
			if ferr := ss.held.Release(); err == nil {
				err = ferr
			}
		}()
	}
	b := pubBatchPool.Get().(*pubBatch)
	defer b.reset()
	window := l.live.Load().window
	for !cl.Closed() && rd.Ready() {
		first, body, err := rd.Next()
		if err != nil {
			return errors.Join(l.runBatch(run, cl, ss, b), err)
		}
		pk := packets.Packet{ProtocolVersion: cl.Properties.ProtocolVersion}
		if err := mqttwire.Decode(&pk, first, body); err != nil {
			return errors.Join(l.runBatch(run, cl, ss, b), err)
		}
		if l.batchable(cl, ss, &pk) {
			b.pks = append(b.pks, pk)
			if len(b.pks) >= window {
				if err := l.runBatch(run, cl, ss, b); err != nil {
					return err
				}
			}
			continue
		}
		if err := l.runBatch(run, cl, ss, b); err != nil {
			return err
		}
		if cl.Closed() {
			return nil
		}
		if err := l.handle(run, cl, ss, pk); err != nil {
			return err
		}
	}
	return l.runBatch(run, cl, ss, b)
}

func (l *Listener) handle(run *listenerRun, cl *mochi.Client, ss *session, pk packets.Packet) error {
	err := l.checkRetain(cl, ss, &pk)
	if err == nil {
		err = l.inject(run, cl, pk)
	}
	if err != nil {
		var code packets.Code
		if errors.As(err, &code) && cl.Properties.ProtocolVersion == 5 && code.Code >= packets.ErrUnspecifiedError.Code {
			_ = run.srv.DisconnectClient(cl, code)
		}
		return err
	}
	if pk.FixedHeader.Type == packets.Subscribe && cl.State.Subscriptions.Len() > 0 {
		l.startWriter(run, cl, ss)
	}
	return nil
}

// inject hands a decoded packet to the broker. A panic inside the broker
// ends this session (counted as malformed and logged as an error) instead
// of the gateway.
func (l *Listener) inject(run *listenerRun, cl *mochi.Client, pk packets.Packet) (err error) {
	defer func() {
		if r := recover(); r != nil {
			l.s.logger.Error("mqtt broker fault while processing a packet; session closed",
				"client_id", cl.ID, "type", pk.FixedHeader.Type, "panic", r)
			err = fmt.Errorf("broker fault on packet type %d (%v): %w", pk.FixedHeader.Type, r, packets.ErrMalformedPacket)
		}
	}()
	return run.srv.InjectPacket(cl, pk)
}

// startWriter starts the broker's write loop for the session once: from
// now on the broker may queue packets for it. The loop ends when the
// session stops.
func (l *Listener) startWriter(run *listenerRun, cl *mochi.Client, ss *session) {
	if !ss.writer.CompareAndSwap(false, true) {
		return
	}
	run.wg.Add(1)
	go func() {
		defer run.wg.Done()
		cl.WriteLoop()
	}()
}

// establish reads and checks CONNECT, authenticates the device and
// registers the session with the broker, taking over an older session of
// the same client id. It answers refusals itself and returns a nil client
// for them; present tells whether a persistent session was resumed.
//
//go:noinline
func (l *Listener) establish(run *listenerRun, conn net.Conn, rd *mqttwire.Reader) (*mochi.Client, *session, bool) {
	srv := run.srv
	remote := conn.RemoteAddr().String()
	first, body, err := rd.Next()
	if err != nil {
		if !errors.Is(err, io.EOF) && !isTimeout(err) {
			l.stats.Total.Malformed()
			l.s.logger.Warn("mqtt connection closed before CONNECT", "remote", remote, "err", err)
		}
		return nil, nil, false
	}
	var pk packets.Packet
	if err := mqttwire.Decode(&pk, first, body); err != nil || pk.FixedHeader.Type != packets.Connect {
		if err == nil {
			err = packets.ErrProtocolViolationRequireFirstConnect
		}
		l.stats.Total.Malformed()
		l.s.logger.Warn("mqtt connection refused: bad CONNECT", "remote", remote, "err", err)
		return nil, nil, false
	}
	cl := srv.NewClient(conn, listenerID, "", false)
	// What the broker writes goes through a Held connection, so that the
	// PUBACKs for a read's worth of PUBLISHes leave in one write (see
	// handleBuffered). Outside a batch it writes straight through.
	ss0 := bufconn.NewHeld(conn)
	cl.Net.Conn = ss0
	cl.ParseConnect(listenerID, pk)
	refuse := func(code packets.Code) (*mochi.Client, *session, bool) {
		_ = srv.SendConnack(cl, code, false, nil)
		cl.Stop(code)
		return nil, nil, false
	}
	if code := validateConnect(srv, cl, pk); code != packets.CodeSuccess {
		l.stats.Total.Malformed()
		l.s.logger.Warn("mqtt connection refused: invalid CONNECT", "remote", remote, "client_id", cl.ID, "err", code)
		return refuse(code)
	}
	// Authenticated sessions register before Reconfigure can change the
	// credentials they were checked against (see Reconfigure).
	l.reconf.RLock()
	ss, ok := run.hook.identify(cl, pk)
	if ok {
		ss.held = ss0
	}
	if !ok {
		l.reconf.RUnlock()
		l.stats.Total.Error()
		user := string(pk.Connect.Username)
		l.logRepeat(slog.LevelWarn, "auth:"+user, "mqtt device refused: bad credentials", "client_id", cl.ID,
			"username", user, "remote", remote)
		return refuse(packets.ErrBadUsernameOrPassword)
	}
	// The broker's connected-clients figure is the session count: only
	// this loop changes it.
	if limit := l.live.Load().maxSessions; atomic.AddInt64(&srv.Info.ClientsConnected, 1) > int64(limit) {
		atomic.AddInt64(&srv.Info.ClientsConnected, -1)
		l.reconf.RUnlock()
		l.stats.Total.Error()
		l.logRepeat(slog.LevelWarn, "limit", "mqtt device refused: session limit reached", "device", ss.device, "limit", limit)
		if cl.Properties.ProtocolVersion < 5 {
			return refuse(packets.ErrServerUnavailable)
		}
		return refuse(packets.ErrServerBusy)
	}
	rd.Idle = time.Duration(cl.State.Keepalive) * 1500 * time.Millisecond // [MQTT-3.1.2-24]
	if rd.Idle == 0 {
		_ = conn.SetDeadline(time.Time{}) // no keepalive: no deadline after CONNECT's
	}

	run.swap.Lock()
	present := l.takeOver(run, cl, pk.Connect.Clean)
	srv.Clients.Add(cl)
	var first1 bool
	ss.stats, first1 = l.stats.DeviceFirst(ss.device)
	if !first1 {
		ss.stats.Reconnect()
		l.stats.Total.Reconnect()
	}
	l.sessions.Store(cl, ss)
	run.swap.Unlock()
	l.reconf.RUnlock()
	return cl, ss, present
}

// validateConnect checks what the broker checks of a CONNECT beyond its
// encoding, against the listener's capabilities.
func validateConnect(srv *mochi.Server, cl *mochi.Client, pk packets.Packet) packets.Code {
	if code := pk.ConnectValidate(); code != packets.CodeSuccess {
		return code
	}
	caps := srv.Options.Capabilities
	switch {
	case cl.Properties.ProtocolVersion < 5 && !pk.Connect.Clean && pk.Connect.ClientIdentifier == "":
		return packets.ErrClientIdentifierNotValid // [MQTT-3.1.3-8]
	case cl.Properties.ProtocolVersion < caps.MinimumProtocolVersion:
		return packets.ErrUnsupportedProtocolVersion
	case cl.Properties.Will.Qos > caps.MaximumQos:
		return packets.ErrQosNotSupported
	case cl.Properties.Will.Retain && caps.RetainAvailable == 0 && cl.Properties.ProtocolVersion == 5:
		// MQTT 5 only: MQTT 3.1.1 has no way to refuse retain, so its
		// retained will is taken as an ordinary one (see checkRetain).
		return packets.ErrRetainNotSupported
	}
	return packets.CodeSuccess
}

// takeOver ends an older session with the same client id and, unless the
// new one starts clean, moves its subscriptions and in-flight messages to
// cl. It reports whether a session was resumed. Called under run.swap.
func (l *Listener) takeOver(run *listenerRun, cl *mochi.Client, clean bool) bool {
	srv := run.srv
	old, ok := srv.Clients.Get(cl.ID)
	if !ok {
		return false
	}
	if v, ok := l.sessions.Load(old); ok {
		v.(*session).takenOver.Store(true)
	}
	if old.Properties.ProtocolVersion == 5 {
		_ = srv.DisconnectClient(old, packets.ErrSessionTakenOver) // [MQTT-3.1.4-3]
	} else {
		old.Stop(packets.ErrSessionTakenOver) // MQTT 3 servers send no DISCONNECT
	}
	if clean || (old.Properties.Clean && old.Properties.ProtocolVersion < 5) {
		srv.UnsubscribeClient(old) // [MQTT-3.1.2-4]
		old.ClearInflights()
		return false
	}
	if old.State.Inflight.Len() > 0 {
		cl.State.Inflight = old.State.Inflight.Clone()
		cl.State.Inflight.ResetReceiveQuota(int32(srv.Options.Capabilities.ReceiveMaximum))
		cl.State.Inflight.ResetSendQuota(int32(cl.Properties.Props.ReceiveMaximum))
	}
	// The topic index keys subscriptions by client id, which both
	// sessions share: only the session's own list moves.
	for filter, sub := range old.State.Subscriptions.GetAll() {
		cl.State.Subscriptions.Add(filter, sub)
		old.State.Subscriptions.Delete(filter)
	}
	old.ClearInflights()
	return true
}

// endSession publishes the will if the device left without DISCONNECT,
// counts a malformed ending, and drops the session from the broker unless
// it persists or was taken over.
func (l *Listener) endSession(run *listenerRun, cl *mochi.Client, ss *session, err error) {
	srv := run.srv
	cl.Stop(err)
	if err != nil && !ss.revoked.Load() {
		l.sendWill(run, cl)
	} else {
		cl.Properties.Will = mochi.Will{} // [MQTT-3.1.2-10]
	}
	var code packets.Code
	if err != nil && errors.As(err, &code) && (code.Code == packets.ErrMalformedPacket.Code || code.Code == packets.ErrProtocolViolation.Code) {
		ss.stats.Malformed()
		l.stats.Total.Malformed()
		l.s.logger.Warn("mqtt device sent a malformed packet; session closed", "device", ss.device, "err", err)
	}
	expire := (cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.SessionExpiryInterval == 0) ||
		(cl.Properties.ProtocolVersion < 5 && cl.Properties.Clean) || ss.revoked.Load()
	run.swap.Lock()
	l.sessions.Delete(cl)
	if expire && !ss.takenOver.Load() {
		cl.ClearInflights()
		srv.UnsubscribeClient(cl)
		srv.Clients.Delete(cl.ID) // [MQTT-4.1.0-2]
	}
	run.swap.Unlock()
	atomic.AddInt64(&srv.Info.ClientsConnected, -1)
}

// sendWill publishes the device's will as if the device had sent it at
// QoS 0: the publish ACL applies, it becomes a frame like any PUBLISH, and
// subscribed devices receive it. The MQTT 5 will delay is not honoured:
// the will goes out when the session ends. Sessions ended by the
// listener's Disconnect send no will.
func (l *Listener) sendWill(run *listenerRun, cl *mochi.Client) {
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 0 || run.hook.ctx.Err() != nil {
		return // no will, or the listener is shutting down
	}
	w := cl.Properties.Will
	atomic.StoreUint32(&cl.Properties.Will.Flag, 0) // [MQTT-3.1.2-10]
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish},
		TopicName:   w.TopicName,
		Payload:     w.Payload,
		Properties:  packets.Properties{User: w.User},
	}
	if err := l.inject(run, cl, pk); err != nil {
		l.s.logger.Warn("mqtt will not published", "client_id", cl.ID, "topic", w.TopicName, "err", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
