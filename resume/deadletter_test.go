package resume

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

// jsonish accepts payloads starting with '{' (a stand-in for a JSON codec)
// and, once lenient is set (the codec fixed by a reload), anything.
func jsonish(lenient *atomic.Bool) gateway.Codec {
	return gateway.CodecFuncs{DecodeFunc: func(f *gateway.Frame, m *gateway.Message) error {
		if len(f.Payload) == 0 || f.Payload[0] != '{' {
			if !lenient.Load() {
				return errors.New("json: invalid character at offset 0")
			}
		}
		m.AddPoint("raw", gateway.Bytes(f.Payload), "")
		return nil
	}}
}

// TestDeadLetterTableListReplay: in edge mode a frame its codec rejects
// lands in the store's dead_letter table, raw with its metadata, and its
// frame record leaves the queue. Replayed once the codec accepts it, it
// reaches the sink with its original ID and leaves the table. Dead letters
// survive a restart of the store.
func TestDeadLetterTableListReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	st, err := NewSQLiteStore(SQLiteConfig{Path: path, Logger: quietLogger(), MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var lenient atomic.Bool
	sink := &recordingSink{ids: map[gateway.MessageID]int{}}
	g, err := gateway.New(gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st), gateway.WithSink("up", sink),
		gateway.WithCodec("json", jsonish(&lenient)), gateway.WithDefaultCodec("json"), gateway.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	runGateway(t, g)
	blob := []byte{0x00, 0xff, 0x10, 0x80}
	for i := uint64(1); i <= 3; i++ {
		f := gateway.AcquireFrame()
		f.Device, f.Topic, f.ID = fmt.Sprintf("dev-%d", i), "telemetry", idOf(i)
		f.Payload = append(f.Payload, blob...)
		if err := g.Inject(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "three dead letters", func() bool { return g.Stats().DeadLetters == 3 })
	waitUntil(t, "frame records gone", func() bool { s := st.Stats(); return s.Rows == 0 && s.Held == 0 })
	dls, err := g.DeadLetters(context.Background(), 0, 10)
	if err != nil || len(dls) != 3 {
		t.Fatalf("dead letters: %d, %v", len(dls), err)
	}
	for i, dl := range dls {
		if dl.ID != idOf(uint64(i+1)) || dl.Device != fmt.Sprintf("dev-%d", i+1) || dl.Topic != "telemetry" ||
			string(dl.Payload) != string(blob) || dl.Codec != "json" || dl.Err == "" || dl.Received.IsZero() || dl.Failed.IsZero() {
			t.Fatalf("dead letter %d: %+v", i, dl)
		}
	}
	// Paging by Seq.
	if page, _ := g.DeadLetters(context.Background(), dls[0].Seq, 1); len(page) != 1 || page[0].Seq != dls[1].Seq {
		t.Fatalf("second page %+v", page)
	}
	if sink.count() != 0 {
		t.Fatal("a dead letter reached the sink")
	}

	// Replayed while the codec still rejects it: a dead letter again.
	if n, err := g.ReplayDeadLetters(context.Background(), dls[0].Seq); n != 1 || err != nil {
		t.Fatalf("replay: %d, %v", n, err)
	}
	waitUntil(t, "dead-lettered again", func() bool { return g.Stats().DeadLetters == 4 })
	waitUntil(t, "still three", func() bool {
		got, _ := g.DeadLetters(context.Background(), 0, 10)
		return len(got) == 3 && got[2].ID == idOf(1)
	})

	lenient.Store(true) // the codec is fixed
	all, _ := g.DeadLetters(context.Background(), 0, 10)
	var seqs []uint64
	for _, dl := range all[:2] {
		seqs = append(seqs, dl.Seq)
	}
	if n, err := g.ReplayDeadLetters(context.Background(), seqs...); n != 2 || err != nil {
		t.Fatalf("replay: %d, %v", n, err)
	}
	waitUntil(t, "replayed letters delivered", func() bool { return sink.count() == 2 })
	if sink.ids[idOf(2)] != 1 || sink.ids[idOf(3)] != 1 {
		t.Fatalf("delivered %v, want the original ids 2 and 3", sink.ids)
	}
	left, _ := g.DeadLetters(context.Background(), 0, 10)
	if len(left) != 1 || left[0].ID != idOf(1) {
		t.Fatalf("left %+v, want dev-1's letter", left)
	}
	if err := g.DeleteDeadLetters(context.Background(), left[0].Seq); err != nil {
		t.Fatal(err)
	}
	if left, _ := g.DeadLetters(context.Background(), 0, 10); len(left) != 0 {
		t.Fatalf("after delete: %+v", left)
	}
	waitUntil(t, "store empty", func() bool { s := st.Stats(); return s.Rows == 0 && s.Held == 0 })
}

// TestDeadLetterTableSurvivesRestart: dead letters are durable and a
// frame dead-lettered twice (a replay after a crash) is kept once.
func TestDeadLetterTableSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	st, err := OpenSQLiteStore(SQLiteConfig{Path: path, Logger: quietLogger(), MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	dl := gateway.DeadLetter{ID: idOf(7), Connector: "mqtt", Device: "d", Topic: "t", Codec: "json", Err: "bad",
		Received: time.Now(), Failed: time.Now(), Payload: []byte{1, 2, 3}}
	for range 2 {
		if err := st.PutDeadLetters(context.Background(), []gateway.DeadLetter{dl}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	st, err = OpenSQLiteStore(SQLiteConfig{Path: path, Logger: quietLogger(), MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	got, err := st.DeadLetters(context.Background(), 0, 10)
	if err != nil || len(got) != 1 || got[0].ID != idOf(7) || string(got[0].Payload) != "\x01\x02\x03" || got[0].Connector != "mqtt" {
		t.Fatalf("after restart: %+v, %v", got, err)
	}
}

// TestDeadLetterTableFull: a dead letter refused for want of space is an
// ErrStoreFull (the gateway then keeps the frame in the queue).
func TestDeadLetterTableFull(t *testing.T) {
	old := statfs
	statfs = func(string) (int64, int64, bool) { return 512 << 10, 16 << 20, true }
	t.Cleanup(func() { statfs = old })
	st, _ := openTestStore(t, nil)
	err := st.PutDeadLetters(context.Background(), []gateway.DeadLetter{{ID: idOf(1), Payload: []byte{1}}})
	if !errors.Is(err, ErrStoreFull) {
		t.Fatalf("err %v, want ErrStoreFull", err)
	}
}
