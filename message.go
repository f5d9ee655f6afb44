package gateway

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// MessageID is a 128-bit identifier that follows a message from the device to
// the upstream consumer. It stays the same across retransmissions and
// restarts, so a consumer can drop duplicates by it (at-least-once on the
// wire, duplicate-free for consumers that honour the id).
type MessageID [16]byte

// IsZero reports whether id is unset.
func (id MessageID) IsZero() bool { return id == MessageID{} }

// String returns the 32-digit lowercase hex form.
func (id MessageID) String() string { return hex.EncodeToString(id[:]) }

// AppendHex appends the 32-digit lowercase hex form of id to dst.
func (id MessageID) AppendHex(dst []byte) []byte { return hex.AppendEncode(dst, id[:]) }

// ParseMessageID parses the 32-digit hex form produced by String.
func ParseMessageID(s string) (MessageID, error) {
	var id MessageID
	if len(s) != 32 {
		return id, errors.New("gateway: message id must be 32 hex digits")
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, errors.New("gateway: message id: " + err.Error())
	}
	return id, nil
}

// IDGenerator hands out MessageIDs that are unique across gateway instances
// and restarts without coordination: a 48-bit millisecond timestamp and an
// 80-bit random instance prefix plus counter, in the layout of a UUIDv7, so
// ids sort roughly by creation time. Next does not allocate or lock.
type IDGenerator struct {
	hi  uint64 // random bits mixed into the high half, fixed per generator
	ctr atomic.Uint64
	now func() time.Time
}

// NewIDGenerator returns a generator seeded from crypto/rand.
func NewIDGenerator() *IDGenerator {
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		// crypto/rand does not fail on supported platforms; keep going with
		// the clock as entropy rather than refusing to start.
		binary.BigEndian.PutUint64(seed[:], uint64(time.Now().UnixNano()))
	}
	g := &IDGenerator{hi: binary.BigEndian.Uint64(seed[:8]), now: time.Now}
	g.ctr.Store(binary.BigEndian.Uint64(seed[8:]))
	return g
}

// Next returns a fresh id.
func (g *IDGenerator) Next() MessageID {
	var id MessageID
	ms := uint64(g.now().UnixMilli())
	// 48 bits of time, 4 bits version (7), 12 random bits.
	binary.BigEndian.PutUint64(id[:8], ms<<16|0x7000|(g.hi&0x0fff))
	// variant bits 10, then 62 bits of a per-generator counter started at a
	// random point: unique within the generator, unpredictable across them.
	binary.BigEndian.PutUint64(id[8:], g.ctr.Add(1)&0x3fffffffffffffff|0x8000000000000000)
	return id
}

// Frame is the raw bytes one device sent through one connector. Connectors
// take Frames from AcquireFrame, fill them, and hand them to their Uplink,
// which owns them from then on.
type Frame struct {
	// Device identifies the sending device within its connector.
	Device string
	// Topic is the device-side address of the data, the part after the
	// device id, the same for every connector: MQTT "devices/sensor-1/env",
	// CoAP and HTTP ".../devices/sensor-1/env" all give "env"; a Modbus
	// block gives "hr/0". Routes match on it, and upstream topics are built
	// from it (for example "gw/{device}/{topic}" gives "gw/sensor-1/env").
	Topic string
	// Connector is the name of the connector the frame arrived on. The
	// gateway sets it on delivery.
	Connector string
	// Received is when the gateway read the frame.
	Received time.Time
	// ID is set by connectors whose devices number their messages (for
	// example from a device sequence number) so a device retransmission maps
	// to the same MessageID. Zero means the gateway assigns one.
	ID MessageID
	// Payload holds the device bytes. It is backed by a pooled buffer: keep
	// it only until Release.
	Payload []byte
	// Trace is the trace context the device sent, set by the connector
	// (HTTP traceparent/tracestate headers, MQTT 5 user properties of the
	// same names, the CoAP trace option). Zero starts a new trace at the
	// gateway. See Message.Trace.
	Trace TraceContext

	bind     *binding
	storeSeq uint64       // edge mode: the Store record holding this frame
	decoded  *Message     // decoded before acceptance (DeliverChecked)
	gw       TraceContext // the gateway's trace context (startTrace)
	tr       msgTrace
}

// Reset clears f for reuse, keeping the payload capacity.
func (f *Frame) Reset() {
	p := f.Payload[:0]
	*f = Frame{Payload: p}
}

// maxPooledPayload keeps a one-off huge frame from pinning memory in the pool.
const maxPooledPayload = 64 << 10

var framePool = sync.Pool{New: func() any { return &Frame{Payload: make([]byte, 0, 512)} }}

// AcquireFrame returns an empty Frame from a shared pool.
func AcquireFrame() *Frame { return framePool.Get().(*Frame) }

// Release returns f to the pool. f must not be used afterwards. The gateway
// releases every frame it was handed; connectors call Release only on frames
// they did not deliver.
func (f *Frame) Release() {
	if f.decoded != nil {
		releaseMsg(f.decoded)
	}
	if cap(f.Payload) > maxPooledPayload {
		f.Payload = nil
	}
	if f.Payload == nil {
		f.Payload = make([]byte, 0, 512)
	}
	f.Reset()
	framePool.Put(f)
}

// Priority orders messages when capacity is short: higher goes first.
type Priority uint8

// Common priorities; any value in between is allowed.
const (
	PriorityLow    Priority = 0
	PriorityNormal Priority = 4
	PriorityHigh   Priority = 7
)

// Message is a decoded frame: typed points plus routing metadata. The gateway
// pools Messages: a Sink must not keep a *Message (or its slices) after
// Publish returns; copy what it needs with Clone.
type Message struct {
	ID        MessageID
	Device    string
	Topic     string
	Connector string
	// Time is when the reading was taken: the device's timestamp when the
	// codec finds one, the receive time otherwise.
	Time     time.Time
	Points   []Point
	Tags     Tags
	Priority Priority
	// QoS is the upstream delivery guarantee (MQTT semantics: 0, 1 or 2).
	QoS byte
	// Trace is the message's trace context: the device's trace (or a new
	// one started at the gateway) with the span id of the gateway's
	// receive span, and the sampled flag of the gateway's decision. Sinks
	// pass it upstream (the MQTT sink's envelope "traceparent").
	Trace TraceContext

	refs int32 // sinks still holding the message; atomic, plain so Message copies cleanly

	// Edge mode: the Store record of the frame this message came from, and
	// how many of its sinks have yet to publish or spill it (atomic).
	storeSeq uint64
	pending  int32
	// deadSink, when set, sends a dead letter to this sink, not the router.
	deadSink string
	tr       msgTrace

	// arrived is when the gateway received the frame (Unix nanoseconds),
	// the start of the publish latency metric.
	arrived int64
}

// Reset clears m for reuse, keeping slice capacity.
func (m *Message) Reset() {
	pts, tags := m.Points[:0], m.Tags[:0]
	clear(m.Points[:cap(m.Points)])
	clear(m.Tags[:cap(m.Tags)])
	m.ID = MessageID{}
	m.Device, m.Topic, m.Connector = "", "", ""
	m.Time = time.Time{}
	m.Points, m.Tags = pts, tags
	m.Priority, m.QoS = 0, 0
	atomic.StoreInt32(&m.refs, 0)
	m.storeSeq = 0
	atomic.StoreInt32(&m.pending, 0)
	m.deadSink = ""
	m.Trace = TraceContext{}
	m.tr = msgTrace{}

	m.arrived = 0
}

// AddPoint appends a point.
func (m *Message) AddPoint(name string, v Value, unit string) {
	m.Points = append(m.Points, Point{Name: name, Value: v, Unit: unit})
}

// Point returns the named point, or false.
func (m *Message) Point(name string) (Point, bool) {
	for i := range m.Points {
		if m.Points[i].Name == name {
			return m.Points[i], true
		}
	}
	return Point{}, false
}

// Clone returns a deep copy of m that is not pooled.
func (m *Message) Clone() *Message {
	c := &Message{
		ID: m.ID, Device: m.Device, Topic: m.Topic, Connector: m.Connector,
		Time: m.Time, Priority: m.Priority, QoS: m.QoS, Trace: m.Trace,
	}
	c.Points = append([]Point(nil), m.Points...)
	c.Tags = append(Tags(nil), m.Tags...)
	return c
}

var messagePool = sync.Pool{New: func() any {
	return &Message{Points: make([]Point, 0, 8), Tags: make(Tags, 0, 4)}
}}

func acquireMessage() *Message { return messagePool.Get().(*Message) }

// release drops one reference and recycles m when none are left.
func (m *Message) release() {
	if atomic.AddInt32(&m.refs, -1) > 0 {
		return
	}
	if cap(m.Points) > 1024 || cap(m.Tags) > 256 {
		return // let the GC have oversized slices
	}
	m.Reset()
	messagePool.Put(m)
}
