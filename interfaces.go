package gateway

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrClosed is returned once the gateway has begun shutting down.
	ErrClosed = errors.New("gateway: closed")
	// ErrDropped is returned by Uplink.Deliver when the ingress queue is full
	// and the overflow policy is DropNewest: the frame was not accepted, so a
	// connector must not acknowledge it to the device.
	ErrDropped = errors.New("gateway: frame dropped, queue full")
	// ErrNotSupported is returned when an optional capability (a kernel
	// feature, a codec direction, a downlink) is missing.
	ErrNotSupported = errors.New("gateway: not supported")
	// ErrNoRoute is returned for a downlink write to a connector or device
	// the gateway does not know.
	ErrNoRoute = errors.New("gateway: no route")
	// ErrMalformedPayload is wrapped by DeliverChecked's error when the
	// connector's codec cannot decode the frame: nothing was accepted, and
	// a connector whose protocol can say so refuses the payload (MQTT 5
	// PUBACK 0x99, CoAP 4.00, HTTP 400) instead of acknowledging it.
	ErrMalformedPayload = errors.New("gateway: malformed payload")
)

// Uplink is how a connector hands frames to the gateway. It is safe for
// concurrent use by many device sessions.
type Uplink interface {
	// Deliver passes f to the decode plane. Deliver always takes ownership
	// of f, whatever it returns. A nil error means the frame is accepted:
	// queued in memory, and in ModeEdge also committed to the Store, so the
	// gateway takes responsibility for it from here (a Store error, such as
	// a full disk, is returned and nothing is accepted). Under the Block overflow policy Deliver waits for
	// room until ctx is done; under DropNewest it returns ErrDropped at once
	// when the queue is full; under DropOldest it evicts the oldest queued
	// frame (counted) and accepts f. After shutdown starts it returns
	// ErrClosed.
	Deliver(ctx context.Context, f *Frame) error
}

// CheckingUplink is implemented by the gateway's Uplink: DeliverChecked
// decodes f with the connector's codec before accepting it. A payload the
// codec rejects is refused with an error wrapping ErrMalformedPayload and
// nothing is accepted (it is counted in Stats.MalformedRefused, not
// dead-lettered: the device was told). Otherwise it is Deliver, and the
// frame is not decoded a second time. Use it through DeliverChecked.
type CheckingUplink interface {
	Uplink
	DeliverChecked(ctx context.Context, f *Frame) error
}

// DeliverChecked decodes before accepting when up supports it (see
// CheckingUplink), and is up.Deliver otherwise. Connectors call it where
// the protocol can refuse a payload before acknowledging it; where it
// cannot (MQTT 3.1.1, QoS 0, polled devices), they call Deliver and a
// frame the codec rejects goes to the dead letters (see WithDeadLetter).
func DeliverChecked(ctx context.Context, up Uplink, f *Frame) error {
	if cu, ok := up.(CheckingUplink); ok {
		return cu.DeliverChecked(ctx, f)
	}
	return up.Deliver(ctx, f)
}

// DeviceConnector is a southbound protocol endpoint: an MQTT listener, a
// CoAP server, a Modbus poller. It owns its goroutines and device sessions.
type DeviceConnector interface {
	// Connect starts the connector: from now until Disconnect returns it
	// may call up.Deliver from any goroutine. ctx bounds the start-up only;
	// the connector keeps running after Connect returns nil. A returned
	// error means nothing is left running; the gateway retries with backoff.
	Connect(ctx context.Context, up Uplink) error
	// Disconnect stops the connector and waits for its goroutines. After it
	// returns, the connector does not call Deliver again. ctx bounds the
	// wait.
	Disconnect(ctx context.Context) error
}

// Downlinker is implemented by connectors that can write to devices. The
// frame carries the target device, the device-side topic or address, and
// the payload produced by the device's codec. The connector does not keep f.
type Downlinker interface {
	Write(ctx context.Context, f *Frame) error
}

// Checker is implemented by connectors, sinks and stores that can report
// their health. Readiness requires every Checker to return nil.
type Checker interface {
	Check(ctx context.Context) error
}

// StatsReporter is implemented by connectors and sinks that keep counters
// of their own (frames, bytes, malformed input, denials, reconnects, per
// device). Stats and /statz include the report under the component's
// "counters" key.
type StatsReporter interface {
	// StatsReport returns a snapshot that encoding/json can marshal. It
	// holds at most maxDevices per-device entries (none when 0) and says
	// how many it left out, so its size does not grow with the fleet.
	// It must be cheap and safe to call at any time, also concurrently.
	StatsReport(maxDevices int) any
}

// Starter is implemented by sinks that hold resources (connections, an
// embedded broker) to set up before the first Publish. The gateway calls
// Start when the sink's goroutine starts (retrying with backoff while it
// fails) and, when the sink also implements io.Closer, Close after its last
// Publish. Sinks without Starter are closed only when the gateway built them
// from configuration.
type Starter interface {
	Start(ctx context.Context) error
}

// Codec converts device bytes to typed points and back.
type Codec interface {
	// Decode appends the points of f to dst and may set dst's Time, Tags,
	// Priority and Topic. dst arrives with ID, Device, Topic, Connector and
	// Time already filled from f. It must not keep f.Payload: copy any bytes
	// it needs (Bytes does). Steady-state decoding should not allocate.
	Decode(f *Frame, dst *Message) error
	// Encode appends the device bytes for m to dst (append style, so the
	// caller can reuse buffers) and returns the extended slice. A codec
	// that cannot encode returns an error wrapping ErrNotSupported.
	Encode(m *Message, dst []byte) ([]byte, error)
}

// CodecFuncs adapts a pair of functions to Codec. A nil EncodeFunc makes the
// codec decode-only.
type CodecFuncs struct {
	DecodeFunc func(f *Frame, dst *Message) error
	EncodeFunc func(m *Message, dst []byte) ([]byte, error)
}

var _ Codec = CodecFuncs{}

// Decode calls c.DecodeFunc.
func (c CodecFuncs) Decode(f *Frame, dst *Message) error {
	if c.DecodeFunc == nil {
		return errDecodeNotSupported
	}
	return c.DecodeFunc(f, dst)
}

// Encode calls c.EncodeFunc.
func (c CodecFuncs) Encode(m *Message, dst []byte) ([]byte, error) {
	if c.EncodeFunc == nil {
		return dst, errEncodeNotSupported
	}
	return c.EncodeFunc(m, dst)
}

var (
	errEncodeNotSupported = wrapErr("gateway: codec: encode", ErrNotSupported)
	errDecodeNotSupported = wrapErr("gateway: codec: decode", ErrNotSupported)
)

// Sink is an upstream destination: an MQTT broker, a cloud API, a file.
type Sink interface {
	// Publish delivers msgs upstream and returns only when they are
	// acknowledged (for MQTT QoS 1: after every PUBACK). An error means some
	// or all were not delivered; the gateway retries the whole batch, so a
	// sink may see a message again (its ID lets the consumer de-duplicate).
	// Messages are pooled: do not keep them after Publish returns.
	Publish(ctx context.Context, msgs []*Message) error
}

// Router picks the sinks a message goes to. The gateway's built-in router
// matches topic filters and tags (see Route); the rule engine plugs in here.
type Router interface {
	// Route appends the names of the sinks m goes to onto dst and returns
	// it. An empty result means the message is not routed (counted as
	// unrouted). Route may rewrite m (topic, tags, priority, QoS, points).
	// It is called concurrently and must not keep m.
	Route(m *Message, dst []string) []string
}

// Record is one message in a Store, in the Store's own encoding.
type Record struct {
	// Seq is assigned by the Store on Append: strictly increasing, the
	// delivery order within a priority.
	Seq      uint64
	ID       MessageID
	Priority Priority
	// Sink names the sink the record is for. It is empty (FrameRecord) for
	// a device frame the gateway accepted in edge mode before decoding and
	// routing it; its Payload is then the frame's binary form.
	Sink    string
	Payload []byte
	// Attempts counts failed deliveries; NextTry is when the record is due
	// again. Both persist (Release), so a restart resumes the schedule.
	Attempts uint32
	NextTry  time.Time
	Enqueued time.Time
}

// FrameRecord is the Sink of a Record that holds a device frame not yet
// routed (edge mode writes every accepted frame ahead of processing it).
const FrameRecord = ""

// Store is a durable queue for store-and-forward. Implementations are safe
// for concurrent use.
//
// A record is either queued or held. Append and Next hand records to the
// caller held: Next does not return a held record again until the caller
// Releases it. Holds live in memory only, so after a restart every record
// left in the store is queued again and replayed.
type Store interface {
	// Append returns only after recs are durable. It fills in their Seq.
	// The records are held by the caller.
	Append(ctx context.Context, recs []Record) error
	// Next returns up to max queued records that are due (NextTry not in
	// the future), highest priority first, then by Seq, and holds them.
	Next(ctx context.Context, max int) ([]Record, error)
	// Ack removes records by Seq after the upstream acknowledged them. An
	// Ack lost in a crash only means the record is delivered again.
	Ack(ctx context.Context, seqs ...uint64) error
	// Release returns held records to the queue, persisting their Attempts
	// and NextTry.
	Release(ctx context.Context, recs []Record) error
}

// TrafficClass is one QoS class of a shaping Policy.
type TrafficClass struct {
	// Name labels the class in metrics and logs ("voice", "bulk").
	Name string
	// DSCP lists the code points that map to this class.
	DSCP []uint8
	// Handle is the tc class handle as major<<16 | minor, written to
	// skb->priority so the qdisc picks the class.
	Handle uint32
	// RateBits and CeilBits are the guaranteed and maximum egress rates in
	// bit/s; zero means unlimited.
	RateBits, CeilBits uint64
	// IngressBits polices received traffic of the class; zero disables it.
	IngressBits uint64
	// Remark, when non-zero, rewrites the DSCP of egress packets.
	Remark uint8
}

// Policy is what a Shaper enforces on one interface.
type Policy struct {
	Interface string
	Classes   []TrafficClass
	// SampleEvery emits one packet event per N packets; zero disables
	// sampling.
	SampleEvery uint32
}

// Shaper applies kernel-level traffic classification and rate limits.
type Shaper interface {
	Apply(ctx context.Context, p Policy) error
	Close() error
}

type wrappedErr struct {
	msg string
	err error
}

func (e *wrappedErr) Error() string { return e.msg + ": " + e.err.Error() }
func (e *wrappedErr) Unwrap() error { return e.err }

func wrapErr(msg string, err error) error { return &wrappedErr{msg: msg, err: err} }
