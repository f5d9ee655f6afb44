package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cloneSink keeps a copy of every message it is given.
type cloneSink struct {
	mu  sync.Mutex
	got []*Message
}

func (s *cloneSink) Publish(_ context.Context, msgs []*Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.got = append(s.got, m.Clone())
	}
	return nil
}

func (s *cloneSink) all() []*Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*Message(nil), s.got...)
}

// blob is a payload f64Codec rejects: the binary blob on a JSON connector.
func blob(device, topic string) *Frame {
	f := AcquireFrame()
	f.Device, f.Topic = device, topic
	f.Payload = append(f.Payload, 0xde, 0xad, 0xbe)
	return f
}

func checkDeadLetterMessage(t *testing.T, m *Message, topic string) {
	t.Helper()
	p, ok := m.Point("raw")
	if !ok || string(p.Value.Str()) != "\xde\xad\xbe" {
		t.Fatalf("dead letter carries %v, want the raw bytes as point raw", m.Points)
	}
	for k, want := range map[string]string{"dead_letter": "decode", "codec": "f64", "topic": "t/1"} {
		if v, _ := m.Tags.Get(k); v != want {
			t.Errorf("tag %s = %q, want %q", k, v, want)
		}
	}
	if e, _ := m.Tags.Get("error"); !strings.Contains(e, "want 8 bytes") {
		t.Errorf("tag error = %q, want the codec's error", e)
	}
	if m.Device != "d1" || m.Connector != "c" || m.Topic != topic {
		t.Errorf("dead letter device %q connector %q topic %q, want d1 c %q", m.Device, m.Connector, m.Topic, topic)
	}
}

// TestDeadLetterSink: a frame its codec rejects goes to the named
// dead-letter sink (not to the routes), raw and with the error; before,
// it was acknowledged and dropped.
func TestDeadLetterSink(t *testing.T) {
	up, dead := newCollectSink(), &cloneSink{}
	conn := &testConnector{}
	g, err := New(WithLogger(quietLogger()), WithConnector("c", conn), WithCodec("f64", f64Codec),
		WithConnectorCodec("c", "f64"), WithSink("up", up), WithSink("dead", dead),
		WithRoute(Route{Topic: "#", Sinks: []string{"up"}}), WithDeadLetter(DeadLetterConfig{Sink: "dead"}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	waitFor(t, "connector up", 5*time.Second, func() bool { return conn.uplink() != nil })
	if err := conn.uplink().Deliver(context.Background(), blob("d1", "t/1")); err != nil {
		t.Fatal(err)
	}
	if err := conn.send(t, "d1", "t/1", 1.5); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead letter", 5*time.Second, func() bool { return len(dead.all()) == 1 })
	waitFor(t, "good frame", 5*time.Second, func() bool { return up.count() == 1 })
	checkDeadLetterMessage(t, dead.all()[0], "t/1")
	if st := g.Stats(); st.DeadLetters != 1 || st.DecodeErrors != 1 || st.DeadLettersDropped != 0 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestDeadLetterTopic: with a topic template the dead letter is routed.
func TestDeadLetterTopic(t *testing.T) {
	up, dead := newCollectSink(), &cloneSink{}
	conn := &testConnector{}
	g, err := New(WithLogger(quietLogger()), WithConnector("c", conn), WithCodec("f64", f64Codec),
		WithConnectorCodec("c", "f64"), WithSink("up", up), WithSink("dead", dead),
		WithRoute(Route{Topic: "t/#", Sinks: []string{"up"}}), WithRoute(Route{Topic: "dead/#", Sinks: []string{"dead"}}),
		WithDeadLetter(DeadLetterConfig{Topic: "dead/{connector}/{device}/{codec}"}))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	waitFor(t, "connector up", 5*time.Second, func() bool { return conn.uplink() != nil })
	if err := conn.uplink().Deliver(context.Background(), blob("d1", "t/1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "dead letter", 5*time.Second, func() bool { return len(dead.all()) == 1 })
	checkDeadLetterMessage(t, dead.all()[0], "dead/c/d1/f64")
	if up.count() != 0 {
		t.Fatal("dead letter routed to the device route")
	}
}

// TestDeadLetterNowhereCounted: without a dead-letter place the frame is
// dropped, but counted as such.
func TestDeadLetterNowhereCounted(t *testing.T) {
	g, err := New(WithLogger(quietLogger()), WithCodec("f64", f64Codec), WithDefaultCodec("f64"), WithSink("up", newCollectSink()))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	if err := g.Inject(context.Background(), blob("d1", "t/1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "drop counted", 5*time.Second, func() bool { return g.Stats().DeadLettersDropped == 1 })
}

func TestDeadLetterOptionErrors(t *testing.T) {
	if _, err := New(WithDeadLetter(DeadLetterConfig{Sink: "a", Topic: "b"})); err == nil {
		t.Error("sink and topic both accepted")
	}
	if _, err := New(WithDeadLetter(DeadLetterConfig{Topic: "dead/{colour}"})); err == nil || !strings.Contains(err.Error(), "colour") {
		t.Errorf("unknown placeholder: %v", err)
	}
	if _, err := New(WithDeadLetter(DeadLetterConfig{Sink: "nope"})); err == nil || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown sink: %v", err)
	}
	for name, c := range map[string]struct{ yaml, want string }{
		"unknown sink": {"gateway:\n  dead_letter: {sink: nope}\n", "gateway.dead_letter.sink"},
		"both":         {"sinks:\n  - {name: a, file: {}}\ngateway:\n  dead_letter: {sink: a, topic: x}\n", "gateway.dead_letter"},
		"unknown key":  {"gateway:\n  dead_letter: {sinc: a}\n", "sinc"},
		"bad topic":    {"gateway:\n  dead_letter: {topic: 'dead/#'}\n", "gateway.dead_letter.topic"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(c.yaml), "gw.yaml")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to name %q", err, c.want)
			}
		})
	}
	cfg, err := ParseConfig([]byte("gateway:\n  dead_letter: {topic: 'dead/{device}'}\n"), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.DeadLetter.Topic != "dead/{device}" {
		t.Fatalf("parsed %+v", cfg.Gateway.DeadLetter)
	}
}

// TestDeliverCheckedRefusesMalformed: a connector that decodes before the
// ack gets ErrMalformedPayload for a payload its codec rejects, and
// nothing is accepted; a good frame is decoded once and delivered.
func TestDeliverCheckedRefusesMalformed(t *testing.T) {
	var decodes atomic.Int32
	codec := CodecFuncs{DecodeFunc: func(f *Frame, m *Message) error {
		decodes.Add(1)
		return f64Codec.Decode(f, m)
	}}
	up := newCollectSink()
	conn := &testConnector{}
	g, err := New(WithLogger(quietLogger()), WithConnector("c", conn), WithCodec("f64", codec),
		WithConnectorCodec("c", "f64"), WithSink("up", up))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	waitFor(t, "connector up", 5*time.Second, func() bool { return conn.uplink() != nil })
	err = DeliverChecked(context.Background(), conn.uplink(), blob("d1", "t/1"))
	if !errors.Is(err, ErrMalformedPayload) || !strings.Contains(err.Error(), "want 8 bytes") {
		t.Fatalf("DeliverChecked of a blob: %v, want ErrMalformedPayload with the codec's error", err)
	}
	if err := DeliverChecked(context.Background(), conn.uplink(), frame("d1", "t/1", 2.5)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "good frame", 5*time.Second, func() bool { return up.count() == 1 })
	if v := up.values()[0]; v != 2.5 {
		t.Fatalf("got %v", v)
	}
	st := g.Stats()
	if st.MalformedRefused != 1 || st.FramesIn != 1 || st.DeadLetters != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n := decodes.Load(); n != 2 {
		t.Fatalf("%d decodes for two frames", n)
	}
}

// dlMemStore is a memStore that keeps dead letters, and can be made to
// fail storing them.
type dlMemStore struct {
	*memStore
	fail atomic.Bool
	mu   sync.Mutex
	dls  []DeadLetter
	seq  uint64
}

func (s *dlMemStore) PutDeadLetters(ctx context.Context, dls []DeadLetter) error {
	if s.fail.Load() {
		return errors.New("dead letters: disk full")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, dl := range dls {
		s.seq++
		dl.Seq = s.seq
		dl.Payload = append([]byte(nil), dl.Payload...)
		s.dls = append(s.dls, dl)
	}
	return nil
}

func (s *dlMemStore) DeadLetters(ctx context.Context, after uint64, max int) ([]DeadLetter, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []DeadLetter
	for _, dl := range s.dls {
		if dl.Seq > after && len(out) < max {
			out = append(out, dl)
		}
	}
	return out, nil
}

func (s *dlMemStore) DeleteDeadLetters(ctx context.Context, seqs ...uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := s.dls[:0]
	for _, dl := range s.dls {
		del := false
		for _, q := range seqs {
			del = del || dl.Seq == q
		}
		if !del {
			keep = append(keep, dl)
		}
	}
	s.dls = keep
	return nil
}

func (s *dlMemStore) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.dls) }

// TestDeadLetterStoreFailureLosesNothing: in edge mode a dead letter the
// store cannot keep leaves the frame in the store (counted, logged) and is
// tried again until it is kept.
func TestDeadLetterStoreFailureLosesNothing(t *testing.T) {
	old := deadLetterRetry
	deadLetterRetry = 20 * time.Millisecond
	t.Cleanup(func() { deadLetterRetry = old })
	st := &dlMemStore{memStore: newMemStore()}
	st.fail.Store(true)
	g, err := New(WithLogger(quietLogger()), WithMode(ModeEdge), WithStore(st), WithCodec("f64", f64Codec),
		WithDefaultCodec("f64"), WithSink("up", newCollectSink()))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	if err := g.Inject(context.Background(), blob("d1", "t/1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "failures counted", 5*time.Second, func() bool { return g.Stats().DeadLetterErrors >= 2 })
	if st.len() != 1 {
		t.Fatalf("%d records in the store while the dead letter cannot be kept, want the frame", st.len())
	}
	st.fail.Store(false)
	waitFor(t, "dead letter kept", 5*time.Second, func() bool { return st.count() == 1 })
	waitFor(t, "frame record gone", 5*time.Second, func() bool { return st.len() == 0 })
	dls, err := g.DeadLetters(context.Background(), 0, 10)
	if err != nil || len(dls) != 1 || string(dls[0].Payload) != "\xde\xad\xbe" || dls[0].Codec != "f64" || dls[0].Device != "d1" {
		t.Fatalf("dead letters %+v, %v", dls, err)
	}
	if g.Stats().DeadLetters != 1 {
		t.Fatalf("stats %+v", g.Stats())
	}
}

// TestDeliverCheckedEdgeMode: in edge mode a frame decoded before the ack
// is still written ahead and its record leaves the store once published; a
// refused one leaves nothing in the store.
func TestDeliverCheckedEdgeMode(t *testing.T) {
	st := &dlMemStore{memStore: newMemStore()}
	up := newCollectSink()
	conn := &testConnector{}
	g, err := New(WithLogger(quietLogger()), WithMode(ModeEdge), WithStore(st), WithConnector("c", conn),
		WithCodec("f64", f64Codec), WithConnectorCodec("c", "f64"), WithSink("up", up))
	if err != nil {
		t.Fatal(err)
	}
	run(t, g)
	waitFor(t, "connector up", 5*time.Second, func() bool { return conn.uplink() != nil })
	if err := DeliverChecked(context.Background(), conn.uplink(), blob("d1", "t/1")); !errors.Is(err, ErrMalformedPayload) {
		t.Fatalf("blob: %v", err)
	}
	if st.len() != 0 || st.count() != 0 {
		t.Fatalf("refused frame left %d records, %d dead letters", st.len(), st.count())
	}
	for i := range 20 {
		if err := DeliverChecked(context.Background(), conn.uplink(), frame("d1", "t/1", float64(i))); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all published", 5*time.Second, func() bool { return up.count() == 20 })
	waitFor(t, "store empty", 5*time.Second, func() bool { return st.len() == 0 })
}
