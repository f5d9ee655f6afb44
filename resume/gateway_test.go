package resume

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

type recordingSink struct {
	mu   sync.Mutex
	fail bool
	ids  map[gateway.MessageID]int
}

func (s *recordingSink) Publish(ctx context.Context, msgs []*gateway.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("upstream down")
	}
	for _, m := range msgs {
		s.ids[m.ID]++
	}
	return nil
}

func (s *recordingSink) set(fail bool) { s.mu.Lock(); s.fail = fail; s.mu.Unlock() }
func (s *recordingSink) count() int    { s.mu.Lock(); defer s.mu.Unlock(); return len(s.ids) }

// TestGatewayEdgeModeFromYAML builds an edge gateway whose store comes from
// `store: {sqlite: {path: ...}}`: frames are durable before Deliver
// returns, survive an outage of the sink, and leave the store once
// delivered.
func TestGatewayEdgeModeFromYAML(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	cfg, err := gateway.ParseConfig([]byte(fmt.Sprintf("gateway:\n  mode: edge\nstore:\n  sqlite:\n    path: %s\n    synchronous: FULL\n", path)), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	sink := &recordingSink{ids: map[gateway.MessageID]int{}}
	sink.set(true)
	g, err := gateway.New(gateway.WithConfig(cfg), gateway.WithRegistry(reg), gateway.WithSink("up", sink), gateway.WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// A second handle on the same file shows what is durable.
	peek, err := OpenSQLiteStore(SQLiteConfig{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer peek.Close()
	const n = 40
	for i := 0; i < n; i++ {
		f := gateway.AcquireFrame()
		f.Device, f.Topic, f.ID = "d", "t", idOf(uint64(i+1))
		f.Payload = append(f.Payload, 'x')
		if err := g.Inject(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		var rows int
		if err := peek.db.QueryRow("SELECT count(*) FROM records").Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows == 0 {
			t.Fatalf("frame %d acknowledged but nothing is in the store", i)
		}
	}
	sink.set(false)
	waitUntil(t, "all delivered", func() bool { return sink.count() == n })
	waitUntil(t, "store empty", func() bool {
		var rows int
		_ = peek.db.QueryRow("SELECT count(*) FROM records").Scan(&rows)
		return rows == 0
	})
	for i := 0; i < n; i++ {
		if sink.ids[idOf(uint64(i+1))] == 0 {
			t.Fatalf("message %d lost", i+1)
		}
	}
}

func TestRegisterRejectsBadConfig(t *testing.T) {
	for name, c := range map[string]struct{ yaml, want string }{
		"no path":  {"store:\n  sqlite: {synchronous: FULL}\n", "path"},
		"sync":     {"store:\n  sqlite: {path: /tmp/x.db, synchronous: SOMETIMES}\n", "synchronous"},
		"overflow": {"store:\n  sqlite: {path: /tmp/x.db, overflow: maybe}\n", "overflow"},
		"unknown":  {"store:\n  sqlite: {path: /tmp/x.db, colour: red}\n", "colour"},
		"no dir":   {"store:\n  sqlite: {path: /nonexistent/dir/x.db}\n", "directory"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := gateway.ParseConfig([]byte(c.yaml), "gw.yaml")
			if err == nil {
				reg := gateway.NewRegistry()
				_ = Register(reg)
				_, err = gateway.New(gateway.WithConfig(cfg), gateway.WithRegistry(reg), gateway.WithLogger(quietLogger()))
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want it to name %q", err, c.want)
			}
		})
	}
}

func TestDrainerLeavesFrameRecords(t *testing.T) {
	st, _ := openTestStore(t, nil)
	frame := []gateway.Record{{Sink: gateway.FrameRecord, Priority: gateway.PriorityNormal, Payload: []byte{1, 2, 3}}}
	if err := st.Append(context.Background(), frame); err != nil {
		t.Fatal(err)
	}
	_ = st.Release(context.Background(), frame)
	fillStore(t, st, 10, "up")
	sink := &recordingSink{ids: map[gateway.MessageID]int{}}
	d, _ := NewDrainer(DrainerConfig{Store: st, Sink: sink, Logger: quietLogger(), Poll: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	waitUntil(t, "drained", func() bool { return sink.count() == 10 && st.Stats().Rows == 1 })
	time.Sleep(50 * time.Millisecond)
	cancel()
	<-done
	if st.Stats().Rows != 1 {
		t.Fatalf("the frame record was dropped by the drainer")
	}
}
