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

// upConnector is a connector that only hands out its Uplink.
type upConnector struct{ up chan gateway.Uplink }

func (c *upConnector) Connect(_ context.Context, up gateway.Uplink) error {
	c.up <- up
	return nil
}
func (c *upConnector) Disconnect(context.Context) error { return nil }

// BenchmarkGatewayEdgeIngest measures what R4.5 costs end to end with
// pipelined delivery: 64 devices hand 256-byte frames to an edge-mode
// gateway on a SQLiteStore (synchronous=FULL) 16 at a time
// (gateway.DeliverBatch, as a connector does with a read's worth of
// PUBLISHes), the same shape as BenchmarkStoreAppendDurable; each call
// returns after the group commit holding its frames, and each record is
// deleted after the sink took the message. Compare msg/s with
// BenchmarkStoreAppendDurable in the same run.
func BenchmarkGatewayEdgeIngest(b *testing.B) {
	benchEdgeIngest(b, 16)
}

// BenchmarkGatewayEdgeIngestSerial is BenchmarkGatewayEdgeIngest with one
// Deliver per frame, each waiting for its own commit: what connectors did
// before pipelining.
func BenchmarkGatewayEdgeIngestSerial(b *testing.B) {
	benchEdgeIngest(b, 1)
}

func benchEdgeIngest(b *testing.B, perCall int) {
	st, _ := openTestStore(b, func(c *SQLiteConfig) { c.SkipIntegrityCheck = true })
	sink := &discardSink{}
	conn := &upConnector{up: make(chan gateway.Uplink, 1)}
	g, err := gateway.New(gateway.WithLogger(quietLogger()), gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st),
		gateway.WithSink("up", sink), gateway.WithConnector("dev", conn))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	up := <-conn.up
	payload := make([]byte, 256)
	const devices = 64
	var next atomic.Int64
	b.ReportAllocs()
	b.SetBytes(256)
	b.ResetTimer()
	var wg sync.WaitGroup
	for d := 0; d < devices; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ds := make([]gateway.Delivery, perCall)
			for {
				n := next.Add(int64(perCall))
				if n-int64(perCall) >= int64(b.N) {
					return
				}
				k := perCall
				if over := n - int64(b.N); over > 0 {
					k -= int(over)
				}
				for i := 0; i < k; i++ {
					f := gateway.AcquireFrame()
					f.Device, f.Topic = "dev", "t"
					f.Payload = append(f.Payload, payload...)
					ds[i] = gateway.Delivery{Frame: f}
				}
				gateway.DeliverBatch(context.Background(), up, ds[:k])
				for i := 0; i < k; i++ {
					if ds[i].Err != nil {
						b.Error(ds[i].Err)
						return
					}
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
	if s := st.Stats(); s.Commits > 0 {
		b.ReportMetric(float64(s.CommittedRecs)/float64(s.Commits), "recs/commit")
	}
}
