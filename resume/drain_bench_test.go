package resume

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

// BenchmarkDrainToMosquitto replays a backlog (RESUME_DRAIN_N records,
// default 1,000,000) from a SQLiteStore to a local mosquitto at QoS 1 with
// a paho publisher: every record is acked in the store only after its
// PUBACK. Run with -benchtime 1x.
func BenchmarkDrainToMosquitto(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("RESUME_DRAIN_N")); err == nil && v > 0 {
		n = v
	}
	mq := startMosquitto(b)
	var cons *consumer
	if os.Getenv("RESUME_DRAIN_NOCONSUMER") == "" {
		cons = newConsumer(b, mq.addr, "resume/drain")
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		st, _ := openTestStore(b, func(c *SQLiteConfig) { c.SkipIntegrityCheck = true })
		fillStore(b, st, n, "up")
		sink := &pahoSink{broker: mq.addr, clientID: "drainer", topic: "resume/drain"}
		if err := sink.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		d, err := NewDrainer(DrainerConfig{Store: st, Sink: sink, Batch: 2048, InFlight: 8, Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.StartTimer()
		start := time.Now()
		go func() { done <- d.Run(ctx) }()
		for d.Stats().Acked < uint64(n) {
			time.Sleep(5 * time.Millisecond)
		}
		took := time.Since(start)
		b.StopTimer()
		cancel()
		<-done
		_ = sink.Close()
		b.ReportMetric(float64(n)/took.Seconds(), "msg/s")
		b.ReportMetric(took.Seconds(), "s/backlog")
		deadline := time.Now().Add(60 * time.Second)
		for cons != nil {
			distinct, _ := cons.snapshot()
			if distinct >= n || time.Now().After(deadline) {
				b.ReportMetric(float64(distinct), "consumer-distinct")
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = st.Close()
	}
}
