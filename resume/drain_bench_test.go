package resume

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	upmqtt "github.com/iotgw/gateway/upstream/mqtt"
)

// BenchmarkDrainToMosquitto replays a backlog (RESUME_DRAIN_N records,
// default 1,000,000) from a SQLiteStore to a local mosquitto at QoS 1:
// every record is acked in the store only after its PUBACK. A QoS 1
// consumer on the same broker must see every ID (RESUME_DRAIN_NOCONSUMER=1
// leaves it out). Two publishers in the same run:
//
//   - sink=upstream: the gateway's own MQTT sink (upstream/mqtt, paho under
//     it, one JSON envelope per message), as a deployment drains;
//   - sink=paho: a bare paho client publishing the 32-character ID, the
//     baseline with the least work per message.
//
// Run with -benchtime 1x.
func BenchmarkDrainToMosquitto(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("RESUME_DRAIN_N")); err == nil && v > 0 {
		n = v
	}
	mq := startMosquitto(b)
	for _, kind := range []string{"upstream", "paho"} {
		b.Run("sink="+kind, func(b *testing.B) {
			topic := "resume/drain/" + kind
			var cons *consumer
			if os.Getenv("RESUME_DRAIN_NOCONSUMER") == "" {
				cons = newConsumer(b, mq.addr, topic)
			}
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				st, _ := openTestStore(b, func(c *SQLiteConfig) { c.SkipIntegrityCheck = true })
				fillStore(b, st, n, "up")
				var sink gateway.Sink
				var closeSink func() error
				batch, inflight := 2048, 8
				switch kind {
				case "upstream":
					s, err := upmqtt.New("up", upmqtt.Config{Broker: "tcp://" + mq.addr, ClientID: "drainer-" + kind,
						Topic: topic, CleanSession: true, InFlight: 1024})
					if err != nil {
						b.Fatal(err)
					}
					if err := s.Start(context.Background()); err != nil {
						b.Fatal(err)
					}
					sink, closeSink = s, s.Close
					inflight = 2 // the sink publishes one batch at a time; the next one is read meanwhile
				default:
					s := &pahoSink{broker: mq.addr, clientID: "drainer-" + kind, topic: topic}
					if err := s.Start(context.Background()); err != nil {
						b.Fatal(err)
					}
					sink, closeSink = s, s.Close
				}
				d, err := NewDrainer(DrainerConfig{Store: st, Sink: sink, Batch: batch, InFlight: inflight, Logger: quietLogger()})
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
				_ = closeSink()
				b.ReportMetric(float64(n)/took.Seconds(), "msg/s")
				b.ReportMetric(took.Seconds(), "s/backlog")
				deadline := time.Now().Add(60 * time.Second)
				for cons != nil {
					distinct, _ := cons.snapshot()
					if distinct >= n || time.Now().After(deadline) {
						b.ReportMetric(float64(distinct), "consumer-distinct")
						if distinct < n {
							b.Errorf("consumer saw %d of %d messages", distinct, n)
						}
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				_ = st.Close()
			}
		})
	}
}
