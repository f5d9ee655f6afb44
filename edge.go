package gateway

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Edge mode writes every frame ahead: Deliver returns nil only after the
// frame is committed in the Store (a FrameRecord, held by the gateway), so
// an acknowledgement to a device survives kill -9 and power loss. The record
// is acknowledged in the Store once every sink the message was routed to
// has published it or spilled it into a per-sink record of its own. A frame
// left in the Store by a crash is replayed through decode and routing with
// its original MessageID.

// The binary form of a Frame in a FrameRecord:
//
//	version   u8 (= 1)
//	id        16 bytes
//	device, topic, connector   string (uvarint length, bytes)
//	received  varint (Unix nanoseconds; 0 for the zero time)
//	payload   uvarint length, bytes
//
// Version 2, written once the gateway gave the frame its trace context,
// adds after the payload the gateway's context (trace id 16, span id 8,
// flags u8, tracestate string) and the device's span id (8 bytes, zero when
// the trace started at the gateway), so a replay after an outage or a crash
// continues the original trace with the original sampling decision.
// Version 1 records (an older store's) stay readable.
const (
	frameBinaryVersion      = 1
	frameBinaryVersionTrace = 2
)

// appendFrameBinary appends the binary form of f to dst.
func appendFrameBinary(dst []byte, f *Frame) []byte {
	ver := byte(frameBinaryVersion)
	if f.tr.started {
		ver = frameBinaryVersionTrace
	}
	dst = append(dst, ver)
	dst = append(dst, f.ID[:]...)
	dst = appendString(dst, f.Device)
	dst = appendString(dst, f.Topic)
	dst = appendString(dst, f.Connector)
	var ns int64
	if !f.Received.IsZero() {
		ns = f.Received.UnixNano()
	}
	dst = binary.AppendVarint(dst, ns)
	dst = binary.AppendUvarint(dst, uint64(len(f.Payload)))
	dst = append(dst, f.Payload...)
	if ver == frameBinaryVersionTrace {
		dst = appendTraceBinary(dst, f.gw)
		dst = append(dst, f.tr.parent[:]...)
	}
	return dst
}

// frameBinarySize is the length of the binary form of f, at most.
func frameBinarySize(f *Frame) int {
	return 1 + 16 + 3*binary.MaxVarintLen64 + len(f.Device) + len(f.Topic) + len(f.Connector) +
		2*binary.MaxVarintLen64 + len(f.Payload)
}

// unmarshalFrameBinary fills f (its payload appended to f.Payload) from
// data. Errors name the field and byte offset.
func unmarshalFrameBinary(f *Frame, data []byte) error {
	r := binReader{b: data}
	v := r.byte("version")
	if r.err == nil && v != frameBinaryVersion && v != frameBinaryVersionTrace {
		return fmt.Errorf("frame: version: unsupported %d at offset 0", v)
	}
	if r.need(16, "id") {
		copy(f.ID[:], r.b[r.off:r.off+16])
		r.off += 16
	}
	f.Device = r.string("device")
	f.Topic = r.string("topic")
	f.Connector = r.string("connector")
	if ns := r.varint("received"); ns != 0 {
		f.Received = time.Unix(0, ns)
	}
	n := r.count("payload", 1)
	if r.need(n, "payload") {
		f.Payload = append(f.Payload[:0], r.b[r.off:r.off+n]...)
		r.off += n
	}
	if v == frameBinaryVersionTrace {
		f.gw = r.traceBinary()
		if r.need(8, "parent span id") {
			copy(f.tr.parent[:], r.b[r.off:])
			r.off += 8
		}
		if r.err == nil {
			f.tr.started = true
			f.Trace = TraceContext{}
			if f.tr.parent.IsValid() {
				f.Trace = TraceContext{TraceID: f.gw.TraceID, SpanID: f.tr.parent, Flags: f.gw.Flags, State: f.gw.State}
			}
		}
	}
	if v == frameBinaryVersionTrace && r.err == nil && r.off != len(r.b) {
		r.fail("end", fmt.Errorf("%d trailing bytes", len(r.b)-r.off))
	}
	if r.err != nil {
		return fmt.Errorf("frame: %w", r.err)
	}
	return nil
}

func (g *Gateway) edge() bool { return g.s.mode == ModeEdge && g.s.store != nil }

// persistFrame commits f to the Store before the gateway accepts it.
func (g *Gateway) persistFrame(ctx context.Context, f *Frame) error {
	if f.ID.IsZero() {
		f.ID = g.ids.Next()
	}
	recs := []Record{{
		ID: f.ID, Priority: PriorityNormal, Sink: FrameRecord,
		Payload: appendFrameBinary(nil, f), Enqueued: time.Now(),
	}}
	if err := g.s.store.Append(ctx, recs); err != nil {
		return fmt.Errorf("gateway: store frame of %s/%s: %w", f.Connector, f.Device, err)
	}
	f.storeSeq = recs[0].Seq
	return nil
}

// storeCtx bounds a Store call made on behalf of the pipeline.
func (g *Gateway) storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// ackStored deletes records whose messages are taken care of.
func (g *Gateway) ackStored(seqs ...uint64) {
	if len(seqs) == 0 {
		return
	}
	ctx, cancel := g.storeCtx()
	defer cancel()
	if err := g.s.store.Ack(ctx, seqs...); err != nil {
		g.log.Warn("store ack failed; messages may be replayed again", "count", len(seqs), "err", err)
	}
}

// requeueStored releases held records so the replay loop delivers them. A
// Release that fails (a full disk cannot persist the new attempt count)
// would leave them held, so invisible to the replay until a restart: they
// go to the release queue, which retries with backoff until the Store takes
// them back.
func (g *Gateway) requeueStored(recs []Record) {
	if len(recs) == 0 {
		return
	}
	ctx, cancel := g.storeCtx()
	defer cancel()
	if err := g.s.store.Release(ctx, recs); err != nil {
		g.releaseFailed(err, len(recs))
		g.releaseQ.Add(recs...)
	}
}

// releaseFailed logs a failed Release, at most once a minute per cause.
func (g *Gateway) releaseFailed(err error, n int) {
	g.logLim.Log(context.Background(), g.log, slog.LevelWarn, "store-release",
		"store release failed; retrying with backoff", "count", n, "err", err)
}

// runReleaseQueue retries failed Releases until ctx ends (after the sinks
// stopped at shutdown), with a last try before the Store closes. Records
// still held then are replayed at the next start.
func (g *Gateway) runReleaseQueue(ctx context.Context) {
	defer close(g.releaseDone)
	g.releaseQ.Do = func(ctx context.Context, recs []Record) error {
		return g.s.store.Release(ctx, recs)
	}
	g.releaseQ.OnFail = g.releaseFailed
	if left := g.releaseQ.Run(ctx, 2*time.Second); len(left) > 0 {
		g.log.Warn("store release failed at shutdown; records are replayed at the next start", "count", len(left))
	}
}

// frameNotAccepted undoes persistFrame for a frame Deliver refuses: the
// device was not acknowledged, so the record must not be replayed.
func (g *Gateway) frameNotAccepted(f *Frame) {
	if f.storeSeq != 0 {
		g.ackStored(f.storeSeq)
	}
	f.Release()
}

// frameEvicted handles an accepted frame pushed out of a full ingress queue:
// in edge mode it goes back to the Store queue and is replayed, not lost.
func (g *Gateway) frameEvicted(f *Frame) {
	if f.storeSeq != 0 {
		g.requeueStored([]Record{{Seq: f.storeSeq}})
	}
	f.Release()
}

// sinkDone records that one sink has published (or spilled) every message
// of batch, and acks the frame records of messages no sink still needs.
func (g *Gateway) sinkDone(batch []*Message) {
	var seqs []uint64
	for _, m := range batch {
		if m.storeSeq != 0 && atomic.AddInt32(&m.pending, -1) == 0 {
			seqs = append(seqs, m.storeSeq)
		}
	}
	g.ackStored(seqs...)
}

// spillOne keeps a message a sink queue cannot take: durable in the Store
// for that sink, so the frame record can go.
func (g *Gateway) spillOne(sr *sinkRun, m *Message) bool {
	if !g.edge() || m.storeSeq == 0 {
		return false
	}
	one := []*Message{m}
	if err := g.spill(sr.name, one); err != nil {
		g.log.Error("store append failed; message stays in the store as a frame", append(m.logAttrs(), "sink", sr.name, "err", err)...)
		return false
	}
	now := nowNS()
	g.finishMsg(m, sr.name, now, now, 0, outcomeRetry, errSinkQueueFull)
	g.sinkDone(one)
	m.release()
	return true
}

// bindingFor returns the binding of the named connector, or the default.
func (g *Gateway) bindingFor(connector string) *binding {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cr := g.connectors[connector]; cr != nil {
		return cr.bind
	}
	return g.defaultBind
}

// replayFrame feeds a stored frame back into the decode plane; its record
// stays held until the message is taken care of.
func (g *Gateway) replayFrame(ctx context.Context, r Record) {
	f := AcquireFrame()
	if err := unmarshalFrameBinary(f, r.Payload); err != nil {
		g.log.Error("stored frame unreadable; dropping", "seq", r.Seq, "err", err)
		f.Release()
		g.ackStored(r.Seq)
		return
	}
	f.storeSeq = r.Seq
	f.bind = g.bindingFor(f.Connector)
	switch {
	case !f.tr.started:
		g.startTrace(f) // a version 1 record: the trace starts now
	case g.tracer != nil && f.tr.parent.IsValid() && f.gw.SpanID == f.tr.parent:
		// Stored by a gateway that did not trace (it passed the device's
		// context on): the receive span needs an id of its own.
		putUint64(f.gw.SpanID[:], rand.Uint64()|1)
	}
	f.tr.replayed = true
	if g.traceOn() {
		f.tr.received = f.Received.UnixNano()
		f.tr.accepted = nowNS()
	}
	sh := g.shardFor(f.Device)
	select {
	case sh.frames <- f:
		sh.framesIn.Add(1)
		g.stats.replayed.Add(1)
	case <-ctx.Done():
		g.requeueStored([]Record{r})
		f.Release()
	}
}
