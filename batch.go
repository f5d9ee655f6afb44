package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Delivery is one frame of a DeliverBatch call and its outcome.
type Delivery struct {
	// Frame is handed over: DeliverBatch takes ownership of it, whatever
	// the outcome.
	Frame *Frame
	// Check decodes the frame before accepting it, as DeliverChecked: a
	// payload the codec rejects gets an error wrapping ErrMalformedPayload.
	Check bool
	// Err is the outcome, set by DeliverBatch: nil when the frame was
	// accepted, as a nil error from Deliver means.
	Err error
}

// BatchUplink is implemented by the gateway's Uplink: DeliverBatch hands
// over many frames in one call, so that a connector reading several
// messages at once (a buffer full of MQTT PUBLISHes, concurrent HTTP
// requests) need not wait for each one before handing over the next. In
// edge mode the frames of one call are committed to the Store together,
// in one Append and so one group commit, instead of one commit each. Use
// it through DeliverBatch, or through a Pipeline to receive outcomes
// asynchronously.
type BatchUplink interface {
	Uplink
	DeliverBatch(ctx context.Context, ds []Delivery)
}

// DeliverBatch delivers ds[i].Frame in order and sets ds[i].Err to its
// outcome. The guarantees are those of Deliver (and DeliverChecked for
// the deliveries with Check), per frame: a nil Err means that frame was
// accepted, and in edge mode committed to the Store, before DeliverBatch
// returned. Frames are accepted in order, and once one is refused for any
// reason other than a malformed payload, the frames after it are refused
// too (with the same error), so what a connector acknowledges is always a
// prefix of what each device sent, less its malformed payloads. When up
// is not a BatchUplink, DeliverBatch calls Deliver or DeliverChecked for
// each frame.
func DeliverBatch(ctx context.Context, up Uplink, ds []Delivery) {
	if bu, ok := up.(BatchUplink); ok {
		bu.DeliverBatch(ctx, ds)
		return
	}
	var stop error
	for i := range ds {
		d := &ds[i]
		switch {
		case stop != nil:
			d.Frame.Release()
			d.Err = stop
		case d.Check:
			d.Err = DeliverChecked(ctx, up, d.Frame)
		default:
			d.Err = up.Deliver(ctx, d.Frame)
		}
		d.Frame = nil
		if d.Err != nil && stop == nil && !isMalformed(d.Err) {
			stop = d.Err
		}
	}
}

func isMalformed(err error) bool { return errors.Is(err, ErrMalformedPayload) }

var _ BatchUplink = (*binding)(nil)

// DeliverBatch implements BatchUplink.
func (b *binding) DeliverBatch(ctx context.Context, ds []Delivery) {
	g := b.g
	if g.closing.Load() {
		for i := range ds {
			ds[i].Frame.Release()
			ds[i].Frame, ds[i].Err = nil, ErrClosed
		}
		return
	}
	now := time.Now()
	on := g.traceOn()
	// Stamp, start each frame's trace (its context is stored with it in
	// edge mode) and decode first: malformed payloads drop out before
	// anything is committed.
	n := 0
	for i := range ds {
		d := &ds[i]
		f := d.Frame
		d.Err = nil
		f.Connector, f.bind = b.name, b
		if f.Received.IsZero() {
			f.Received = now
		}
		if f.ID.IsZero() {
			f.ID = g.ids.Next()
		}
		g.startTrace(f)
		if on {
			f.tr.received = f.Received.UnixNano()
		}
		if d.Check {
			if err := b.decodeFirst(ctx, f); err != nil {
				d.Frame, d.Err = nil, err
				continue
			}
		}
		n++
	}
	if n == 0 {
		return
	}
	if g.edge() {
		var t0 int64
		if on {
			t0 = nowNS()
		}
		err := g.persistFrames(ctx, ds, n)
		if on && err == nil {
			t1 := nowNS()
			for i := range ds {
				if f := ds[i].Frame; f != nil {
					f.tr.store[0], f.tr.store[1] = t0, t1
				}
			}
		}
		if err != nil {
			for i := range ds {
				if d := &ds[i]; d.Frame != nil {
					d.Frame.Release()
					d.Frame, d.Err = nil, err
				}
			}
			return
		}
	}
	var stop error
	for i := range ds {
		d := &ds[i]
		f := d.Frame
		if f == nil {
			continue
		}
		d.Frame = nil
		if stop != nil {
			g.frameNotAccepted(f)
			d.Err = stop
			continue
		}
		if err := g.enqueue(ctx, f); err != nil {
			d.Err, stop = err, err
		}
	}
}

// decodeFirst decodes f with the binding's codec before it is accepted
// (DeliverChecked): the message rides along so the decode plane does not
// decode f again. A payload the codec rejects releases f and returns an
// error wrapping ErrMalformedPayload.
func (b *binding) decodeFirst(ctx context.Context, f *Frame) error {
	g := b.g
	g.startTrace(f)
	if g.traceOn() {
		f.tr.received = f.Received.UnixNano()
	}
	nc := b.codec.Load()
	m := g.newMessage(f)
	if err := nc.codec.Decode(f, m); err != nil {
		g.stats.malformedRefused.Add(1)
		g.logLim.Log(ctx, g.log, slog.LevelWarn, "refused:"+f.Connector, "malformed payload refused",
			append(f.logAttrs(), "topic", f.Topic, "codec", nc.name, "err", err)...)
		err = fmt.Errorf("gateway: %s: codec %s: %w: %w", f.Connector, nc.name, ErrMalformedPayload, err)
		g.finishDropped(m, outcomeError)
		releaseMsg(m)
		f.Release()
		return err
	}
	f.decoded = m
	return nil
}

// persistFrames commits the n frames left in ds to the Store in one
// Append: one group commit for them all.
func (g *Gateway) persistFrames(ctx context.Context, ds []Delivery, n int) error {
	size := 0
	for i := range ds {
		if f := ds[i].Frame; f != nil {
			size += frameBinarySize(f)
		}
	}
	buf := make([]byte, 0, size)
	recs := make([]Record, 0, n)
	now := time.Now()
	for i := range ds {
		f := ds[i].Frame
		if f == nil {
			continue
		}
		start := len(buf)
		buf = appendFrameBinary(buf, f)
		recs = append(recs, Record{
			ID: f.ID, Priority: PriorityNormal, Sink: FrameRecord,
			Payload: buf[start:len(buf):len(buf)], Enqueued: now,
		})
	}
	if err := g.s.store.Append(ctx, recs); err != nil {
		return fmt.Errorf("gateway: store %d frames of %s: %w", len(recs), firstConnector(ds), err)
	}
	k := 0
	for i := range ds {
		if f := ds[i].Frame; f != nil {
			f.storeSeq = recs[k].Seq
			k++
		}
	}
	return nil
}

// frameConnector names the connector of the first frame left in ds, for
// errors.
func firstConnector(ds []Delivery) string {
	for i := range ds {
		if f := ds[i].Frame; f != nil {
			return f.Connector
		}
	}
	return ""
}
