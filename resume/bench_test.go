package resume

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

// writeBytes reads this process's write_bytes from /proc/self/io: bytes it
// caused to be sent to the storage layer.
func writeBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return -1
}

// BenchmarkStoreAppendDurable appends 256-byte records with
// synchronous=FULL from 64 concurrent producers, 16 records per Append (a
// decode batch): group commit shares each fsync among them.
func BenchmarkStoreAppendDurable(b *testing.B) {
	s, _ := openTestStore(b, nil)
	payload := make([]byte, 256)
	const producers, perAppend = 64, 16
	var next atomic.Int64
	b.ReportAllocs()
	b.SetBytes(256)
	w0 := writeBytes()
	b.ResetTimer()
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			recs := make([]gateway.Record, perAppend)
			for {
				n := next.Add(perAppend)
				if n-perAppend >= int64(b.N) {
					return
				}
				k := perAppend
				if over := n - int64(b.N); over > 0 {
					k -= int(over)
				}
				for i := 0; i < k; i++ {
					recs[i] = gateway.Record{Priority: gateway.PriorityNormal, Sink: "up", Payload: payload}
					recs[i].ID[0] = byte(i)
				}
				if err := s.Append(context.Background(), recs[:k]); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	// Count the checkpoint too: it is part of what the appends cost.
	if _, err := s.wdb.Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		b.Fatal(err)
	}
	if w1 := writeBytes(); w0 >= 0 && w1 >= 0 {
		b.ReportMetric(float64(w1-w0)/float64(256*b.N), "write-amp")
	}
	st := s.Stats()
	b.ReportMetric(float64(st.CommittedRecs)/float64(st.Commits), "recs/commit")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// BenchmarkStoreAck acks records handed out by Next, batch by batch as the
// drain does, and waits for the deletes to commit.
func BenchmarkStoreAck(b *testing.B) {
	s, _ := openTestStore(b, func(c *SQLiteConfig) { c.SkipIntegrityCheck = true })
	payload := make([]byte, 256)
	ctx := context.Background()
	const chunk = 4096
	for done := 0; done < b.N; done += chunk {
		k := min(chunk, b.N-done)
		recs := make([]gateway.Record, k)
		for i := range recs {
			recs[i] = gateway.Record{Priority: gateway.PriorityNormal, Sink: "up", Payload: payload}
		}
		if err := s.Append(ctx, recs); err != nil {
			b.Fatal(err)
		}
		if err := s.Release(ctx, recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	acked := 0
	for acked < b.N {
		recs, err := s.Next(ctx, 1024)
		if err != nil {
			b.Fatal(err)
		}
		if len(recs) == 0 {
			continue
		}
		seqs := make([]uint64, len(recs))
		for i, r := range recs {
			seqs[i] = r.Seq
		}
		if err := s.Ack(ctx, seqs...); err != nil {
			b.Fatal(err)
		}
		acked += len(recs)
	}
	for s.Stats().Held != 0 { // holds go once the deletes committed
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "acks/s")
}

type discardSink struct{ n atomic.Int64 }

func (s *discardSink) Publish(ctx context.Context, msgs []*gateway.Message) error {
	s.n.Add(int64(len(msgs)))
	return nil
}

// BenchmarkGatewayEdgeIngest measures what R4.5 costs end to end: 64
// devices deliver 256-byte frames to an edge-mode gateway on a
// SQLiteStore (synchronous=FULL); each Deliver returns after its group
// commit, and each record is deleted after the sink took the message.
func BenchmarkGatewayEdgeIngest(b *testing.B) {
	st, _ := openTestStore(b, func(c *SQLiteConfig) { c.SkipIntegrityCheck = true })
	sink := &discardSink{}
	g, err := gateway.New(gateway.WithLogger(quietLogger()), gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st),
		gateway.WithSink("up", sink))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	payload := make([]byte, 256)
	const devices = 64
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for d := 0; d < devices; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				f := gateway.AcquireFrame()
				f.Device, f.Topic = "dev", "t"
				f.Payload = append(f.Payload, payload...)
				if err := g.Inject(context.Background(), f); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for sink.n.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}
