package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/iotgw/gateway/internal/topictmpl"
)

// A frame its codec cannot decode (a binary blob on a JSON connector) is a
// dead letter. The gateway does not drop it: the raw frame goes where
// WithDeadLetter says, and is counted in Stats.DeadLetters:
//
//   - a dead-letter sink (DeadLetterConfig.Sink): published there as a
//     message with one bytes point "raw" (the frame as received) and the
//     tags dead_letter=decode, codec, error and topic (the device topic);
//   - a dead-letter topic (DeadLetterConfig.Topic): the same message with
//     its topic rendered from the template, routed by the routes like any
//     other message;
//   - otherwise, in edge mode with a Store that is a DeadLetterStore (the
//     resume package's SQLite store): a row of its dead_letter table, to
//     list (DeadLetters), replay through the pipeline once the codec is
//     fixed (ReplayDeadLetters) or delete (DeleteDeadLetters).
//
// Without any of these the frame is dropped, counted in
// Stats.DeadLettersDropped and logged. In edge mode nothing is lost when
// the dead-letter place fails: the frame stays in the Store and is tried
// again later (counted in Stats.DeadLetterErrors, logged with the error).
//
// Connectors whose protocol can refuse a payload before acknowledging it
// decode first (DeliverChecked) and refuse a malformed one: the MQTT
// listener answers MQTT 5 publishes with PUBACK 0x99 (payload format
// invalid), the CoAP server 4.00, the HTTP connector 400. MQTT 3.1.1 and
// QoS 0 publishes, CoAP notifications and polled devices cannot say so:
// their frames are acknowledged and then dead-lettered.

// DeadLetter is a frame its codec could not decode, kept raw.
type DeadLetter struct {
	// Seq is assigned by the DeadLetterStore, increasing.
	Seq       uint64
	ID        MessageID
	Connector string
	Device    string
	Topic     string
	// Codec names the codec that rejected the frame; Err is its error.
	Codec string
	Err   string
	// Received is when the gateway read the frame, Failed when decoding
	// failed.
	Received, Failed time.Time
	Payload          []byte
}

// DeadLetterStore is implemented by a Store that keeps dead letters (the
// resume package's SQLiteStore does, in a table of its own).
type DeadLetterStore interface {
	// PutDeadLetters stores dls durably before returning. A letter whose
	// ID is already stored replaces it (a frame dead-lettered again after
	// a crash or a replay is kept once). It fills in Seq.
	PutDeadLetters(ctx context.Context, dls []DeadLetter) error
	// DeadLetters returns up to max letters with Seq above after, by Seq.
	DeadLetters(ctx context.Context, after uint64, max int) ([]DeadLetter, error)
	// DeleteDeadLetters removes letters by Seq; unknown ones are ignored.
	DeleteDeadLetters(ctx context.Context, seqs ...uint64) error
}

// DeadLetterConfig says where frames go that their codec cannot decode.
// At most one of Sink and Topic is set; both empty selects the Store's
// dead-letter table in edge mode (see DeadLetterStore).
type DeadLetterConfig struct {
	// Sink names a configured sink that gets dead letters directly,
	// bypassing the routes.
	Sink string `yaml:"sink"`
	// Topic is a template ({connector}, {device}, {topic}, {codec}) for
	// the topic of dead-letter messages, which the routes then route.
	Topic string `yaml:"topic"`
}

// WithDeadLetter says where frames go that their codec cannot decode.
// Default: in edge mode with a DeadLetterStore (the "sqlite" store kind),
// its dead-letter table; otherwise they are dropped, counted and logged.
// A sink keeps them off the device's own routes; a topic lets the routes
// pick (an unrouted dead letter is dropped like any unrouted message).
// YAML: gateway: {dead_letter: {sink: name}} or {topic: "dead/{connector}/{device}"}.
func WithDeadLetter(c DeadLetterConfig) Option {
	return func(s *settings) error {
		if err := c.validate(); err != nil {
			return fmt.Errorf("dead letter: %w", err)
		}
		s.deadLetter = c
		return nil
	}
}

var deadLetterNames = map[string]bool{"connector": true, "device": true, "topic": true, "codec": true}

func (c DeadLetterConfig) validate() error {
	if c.Sink != "" && c.Topic != "" {
		return errors.New("give sink or topic, not both")
	}
	if c.Topic != "" {
		if _, err := topictmpl.Compile(c.Topic, func(n string) bool { return deadLetterNames[n] }); err != nil {
			return fmt.Errorf("topic: %w", err)
		}
	}
	return nil
}

// deadLetterRetry is when a frame whose dead letter could not be stored is
// tried again (edge mode: it stays in the Store meanwhile).
var deadLetterRetry = 5 * time.Second

// deadLetter takes care of a frame nc could not decode into m (prepared by
// decode). It returns the message to route (a dead-letter sink or topic)
// or nil; it releases f, and m when it does not return it.
func (g *Gateway) deadLetter(f *Frame, m *Message, codec string, derr error) *Message {
	dl := g.s.deadLetter
	cause := "decode:" + f.Connector
	if dl.Sink != "" || dl.Topic != "" {
		m.Points, m.Tags = m.Points[:0], m.Tags[:0]
		m.Device, m.Topic, m.Connector, m.Time = f.Device, f.Topic, f.Connector, f.Received
		m.Priority = PriorityNormal
		m.AddPoint("raw", Bytes(f.Payload), "")
		m.Tags = append(m.Tags, Tag{"dead_letter", "decode"}, Tag{"codec", codec}, Tag{"error", derr.Error()}, Tag{"topic", f.Topic})
		if dl.Topic != "" {
			topic, err := g.deadLetterTopic(f, codec)
			if err != nil {
				g.deadLetterFailed(f, m, fmt.Errorf("topic: %w", err))
				return nil
			}
			m.Topic = topic
		} else {
			m.deadSink = dl.Sink
		}
		m.tr.mark(outcomeDeadLetter)
		g.stats.deadLetters.Add(1)
		g.logLim.Log(context.Background(), g.log, slog.LevelWarn, cause, "decode failed; frame dead-lettered",
			append(f.logAttrs(), "topic", f.Topic, "codec", codec, "err", derr, "to", dl.Sink+dl.Topic)...)
		f.Release()
		return m
	}
	dls, ok := g.s.store.(DeadLetterStore)
	if !ok || !g.edge() {
		g.stats.deadLettersDropped.Add(1)
		g.logLim.Log(context.Background(), g.log, slog.LevelWarn, cause,
			"decode failed; frame dropped (no dead-letter place: see WithDeadLetter)",
			append(f.logAttrs(), "topic", f.Topic, "codec", codec, "err", derr)...)
		g.settleDead(f, m)
		return nil
	}
	ctx, cancel := g.storeCtx()
	err := dls.PutDeadLetters(ctx, []DeadLetter{{
		ID: f.ID, Connector: f.Connector, Device: f.Device, Topic: f.Topic, Codec: codec, Err: derr.Error(),
		Received: f.Received, Failed: time.Now(), Payload: f.Payload,
	}})
	cancel()
	if err != nil {
		g.deadLetterFailed(f, m, err)
		return nil
	}
	g.stats.deadLetters.Add(1)
	g.logLim.Log(context.Background(), g.log, slog.LevelWarn, cause, "decode failed; frame kept in the dead letters",
		append(f.logAttrs(), "topic", f.Topic, "codec", codec, "err", derr)...)
	g.settleDead(f, m)
	return nil
}

// settleDead ends a frame that leaves the pipeline here (kept in the dead
// letters or dropped): its store record, if any, is acknowledged, since
// replaying cannot fix a frame its codec rejects, and f and m are
// released.
func (g *Gateway) settleDead(f *Frame, m *Message) {
	if f.storeSeq != 0 {
		g.ackStored(f.storeSeq)
	}
	g.finishDropped(m, outcomeDeadLetter)
	releaseMsg(m)
	f.Release()
}

// deadLetterFailed handles a dead letter that could not be kept: in edge
// mode the frame stays in the Store and is tried again after
// deadLetterRetry; otherwise it is lost. Both are counted and logged.
func (g *Gateway) deadLetterFailed(f *Frame, m *Message, err error) {
	g.stats.deadLetterErrors.Add(1)
	if f.storeSeq != 0 {
		g.logLim.Log(context.Background(), g.log, slog.LevelError, "dead-letter-failed",
			"dead letter not stored; the frame stays in the store and is tried again",
			append(f.logAttrs(), "retry_in", deadLetterRetry, "err", err)...)
		g.requeueStored([]Record{{Seq: f.storeSeq, Attempts: 1, NextTry: time.Now().Add(deadLetterRetry)}})
	} else {
		g.logLim.Log(context.Background(), g.log, slog.LevelError, "dead-letter-failed",
			"dead letter lost", append(f.logAttrs(), "err", err)...)
	}
	g.finishDropped(m, outcomeDeadLetter|outcomeError)
	releaseMsg(m)
	f.Release()
}

func (g *Gateway) deadLetterTopic(f *Frame, codec string) (string, error) {
	t, err := topictmpl.Compile(g.s.deadLetter.Topic, nil)
	if err != nil {
		return "", err
	}
	b, err := t.Append(nil, func(n string) (string, bool) {
		switch n {
		case "connector":
			return f.Connector, true
		case "device":
			return f.Device, true
		case "topic":
			return f.Topic, true
		case "codec":
			return codec, true
		}
		return "", false
	})
	return string(b), err
}

func releaseMsg(m *Message) {
	if m == nil {
		return
	}
	atomic.StoreInt32(&m.refs, 1)
	m.release()
}

func (g *Gateway) deadLetterStore() (DeadLetterStore, error) {
	dls, ok := g.s.store.(DeadLetterStore)
	if !ok {
		return nil, fmt.Errorf("gateway: dead letters: the store does not keep them: %w", ErrNotSupported)
	}
	return dls, nil
}

// DeadLetters lists up to max dead letters of the Store with Seq above
// after, oldest first. It needs a Store that is a DeadLetterStore
// (otherwise the error wraps ErrNotSupported).
func (g *Gateway) DeadLetters(ctx context.Context, after uint64, max int) ([]DeadLetter, error) {
	dls, err := g.deadLetterStore()
	if err != nil {
		return nil, err
	}
	return dls.DeadLetters(ctx, after, max)
}

// DeleteDeadLetters removes dead letters from the Store by Seq.
func (g *Gateway) DeleteDeadLetters(ctx context.Context, seqs ...uint64) error {
	dls, err := g.deadLetterStore()
	if err != nil {
		return err
	}
	return dls.DeleteDeadLetters(ctx, seqs...)
}

// ReplayDeadLetters hands the dead letters seqs back to the pipeline, as
// frames of their connector with their original ID, device, topic and
// bytes, decoded by the connector's codec of now (fixed by a reload, say).
// Each is deleted from the dead letters once the gateway accepted it (in
// edge mode: committed to the Store as a frame); one that still cannot be
// decoded becomes a dead letter again, under a new Seq. It returns how
// many were handed back; on an error the rest stay where they are.
func (g *Gateway) ReplayDeadLetters(ctx context.Context, seqs ...uint64) (int, error) {
	dls, err := g.deadLetterStore()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, seq := range seqs {
		if seq == 0 {
			continue
		}
		got, err := dls.DeadLetters(ctx, seq-1, 1)
		if err != nil {
			return n, err
		}
		if len(got) == 0 || got[0].Seq != seq {
			continue // gone already
		}
		dl := got[0]
		f := AcquireFrame()
		f.ID, f.Device, f.Topic, f.Received = dl.ID, dl.Device, dl.Topic, dl.Received
		f.Payload = append(f.Payload[:0], dl.Payload...)
		bind := g.bindingFor(dl.Connector)
		f.Connector, f.bind = dl.Connector, bind
		if err := g.deliver(ctx, f); err != nil {
			return n, fmt.Errorf("gateway: replay dead letter %d: %w", seq, err)
		}
		if err := dls.DeleteDeadLetters(ctx, seq); err != nil {
			return n, fmt.Errorf("gateway: replay dead letter %d: delete: %w", seq, err)
		}
		n++
	}
	return n, nil
}

// DeliverChecked implements CheckingUplink: the frame is decoded before it
// is accepted, and the decoded message rides along so the decode plane
// does not decode it again.
func (b *binding) DeliverChecked(ctx context.Context, f *Frame) error {
	f.Connector = b.name
	f.bind = b
	g := b.g
	if g.closing.Load() {
		f.Release()
		return ErrClosed
	}
	if f.Received.IsZero() {
		f.Received = time.Now()
	}
	if f.ID.IsZero() {
		f.ID = g.ids.Next()
	}
	if err := b.decodeFirst(ctx, f); err != nil {
		return err
	}
	return g.deliver(ctx, f)
}
