package mqtt

import (
	"context"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgw/gateway"
)

// Delivering ahead. The embedded broker processes one packet at a time
// and calls the hook's OnPublish, which would deliver the frame and
// return before the broker writes the PUBACK: one Deliver (in edge mode
// one Store commit) and one write per PUBLISH. Instead, handleBuffered
// gathers the consecutive QoS 0 and 1 PUBLISHes a read brought in (up to
// the in-flight window) and hands their frames to the gateway in one
// gateway.DeliverBatch, then has the broker process each in order with
// its outcome already known: OnPublish takes it from the session
// (session.ahead) instead of delivering. Nothing is acknowledged before
// its frame is accepted, and the PUBACKs of the batch leave together
// when the worker releases the session's Held connection.
//
// Only PUBLISHes the broker then surely hands to OnPublish go ahead: a
// topic without an alias, valid, allowed by the session's publish ACL,
// and not a retained MQTT 5 message (a protocol error). Any other packet
// ends the batch and is processed on its own after it, so packets keep
// their order.

// aheadOutcome is what delivering a PUBLISH ahead gave.
type aheadOutcome struct {
	err error
	n   int // payload bytes
	lat time.Duration
}

// pubBatch is a worker's scratch for one batch.
type pubBatch struct {
	pks  []packets.Packet
	ds   []gateway.Delivery
	outs []aheadOutcome
}

var pubBatchPool = sync.Pool{New: func() any { return &pubBatch{} }}

func (b *pubBatch) clear() {
	clear(b.pks)
	clear(b.ds)
	clear(b.outs)
	b.pks, b.ds, b.outs = b.pks[:0], b.ds[:0], b.outs[:0]
}

// reset clears b and puts it back in the pool.
func (b *pubBatch) reset() {
	b.clear()
	pubBatchPool.Put(b)
}

// batchable reports whether pk can be delivered ahead (see above).
func (l *Listener) batchable(cl *mochi.Client, ss *session, pk *packets.Packet) bool {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos > 1 ||
		pk.TopicName == "" || pk.Properties.TopicAliasFlag {
		return false
	}
	if pk.FixedHeader.Retain && cl.Properties.ProtocolVersion == 5 {
		return false
	}
	if !mochi.IsValidFilter(pk.TopicName, true) {
		return false
	}
	acl := ss.acl.Load()
	return acl != nil && allowed(acl.publish, pk.TopicName, false)
}

// runBatch delivers the PUBLISHes gathered in b in one DeliverBatch, then
// has the broker process each with its outcome, in order, and empties b.
func (l *Listener) runBatch(run *listenerRun, cl *mochi.Client, ss *session, b *pubBatch) error {
	if len(b.pks) == 0 {
		return nil
	}
	defer b.clear()
	v5 := cl.Properties.ProtocolVersion == 5
	for i := range b.pks {
		pk := &b.pks[i]
		f := gateway.AcquireFrame()
		f.Device, f.Topic = ss.device, listenerFrameTopic(pk.TopicName, ss.device)
		f.Payload = append(f.Payload[:0], pk.Payload...)
		if v5 && len(pk.Properties.User) > 0 {
			f.Trace = userPropertyTrace(pk.Properties.User)
		}
		// MQTT 5 can refuse a payload in the PUBACK: decode first.
		b.ds = append(b.ds, gateway.Delivery{Frame: f, Check: v5 && pk.FixedHeader.Qos > 0})
		b.outs = append(b.outs, aheadOutcome{n: len(f.Payload)})
	}
	ctx, cancel := context.WithTimeout(run.hook.ctx, l.live.Load().deliverTimeout)
	start := time.Now()
	gateway.DeliverBatch(ctx, run.hook.up, b.ds)
	cancel()
	lat := time.Since(start)
	for i := range b.pks {
		if cl.Closed() {
			// A refusal stopped an MQTT 3 session: the rest of the batch
			// is not acknowledged, and the device sends it again.
			return nil
		}
		o := &b.outs[i]
		o.err, o.lat = b.ds[i].Err, lat
		ss.ahead = o
		err := l.handle(run, cl, ss, b.pks[i])
		ss.ahead = nil
		if err != nil {
			return err
		}
	}
	return nil
}
