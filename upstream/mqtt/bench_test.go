package mqtt

import (
	"bufio"
	"bytes"
	"context"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/testenv"
)

// subscriber is mosquitto_sub printing payloads, one per line, with the
// time each line arrived.
type subscriber struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines [][]byte
	at    []time.Time
	done  chan struct{}
}

func startSubscriber(b *testing.B, broker *mosquitto, filter string) *subscriber {
	bin := testenv.RequireCommand(b, "mosquitto_sub")
	cmd := exec.Command(bin, "-h", "127.0.0.1", "-p", strconv.Itoa(broker.port), "-q", "1", "-t", filter, "-F", "%p")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	s := &subscriber{cmd: cmd, done: make(chan struct{})}
	go func() { // ends when mosquitto_sub exits (stop kills it)
		defer close(s.done)
		r := bufio.NewReaderSize(out, 1<<20)
		for {
			line, err := r.ReadBytes('\n')
			if len(line) > 0 {
				now := time.Now()
				s.mu.Lock()
				s.lines = append(s.lines, line)
				s.at = append(s.at, now)
				s.mu.Unlock()
			}
			if err != nil {
				return
			}
		}
	}()
	b.Cleanup(s.stop)
	// Probe until the subscription is live, then forget the probes.
	probe := paho.NewClient(paho.NewClientOptions().AddBroker(broker.url()).SetClientID("probe-" + filter))
	if tok := probe.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer probe.Disconnect(50)
	topic := filter[:len(filter)-1] + "probe"
	deadline := time.Now().Add(10 * time.Second)
	for s.count() == 0 {
		if time.Now().After(deadline) {
			b.Fatal("mosquitto_sub never received the probe")
		}
		probe.Publish(topic, 1, false, "probe").WaitTimeout(time.Second)
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	s.reset()
	return s
}

func (s *subscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

func (s *subscriber) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines, s.at = nil, nil
}

func (s *subscriber) stop() {
	_ = s.cmd.Process.Kill()
	<-s.done
	_ = s.cmd.Wait()
}

func (s *subscriber) wait(b *testing.B, n int) {
	deadline := time.Now().Add(2 * time.Minute)
	for s.count() < n {
		if time.Now().After(deadline) {
			b.Fatalf("subscriber got %d of %d", s.count(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// report computes msg/s from start to the last arrival and the latency
// percentiles from each payload's send time.
func (s *subscriber) report(b *testing.B, n int, start time.Time, sentAt func(line []byte) (time.Time, bool)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lat := make([]time.Duration, 0, n)
	last := start
	for i, l := range s.lines {
		t, ok := sentAt(l)
		if !ok {
			continue
		}
		lat = append(lat, s.at[i].Sub(t))
		if s.at[i].After(last) {
			last = s.at[i]
		}
	}
	if len(lat) < n {
		b.Fatalf("only %d of %d payloads carried a send time", len(lat), n)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(n)/last.Sub(start).Seconds(), "msg/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
}

const payloadPad = 420 // bytes, about the size of the gateway's envelope below

// BenchmarkEndToEnd measures QoS 1 delivery through a real mosquitto, two
// ways in the same run: "reference" is mosquitto_pub -l -> mosquitto ->
// mosquitto_sub; "gateway" is device frames -> gateway (raw codec, sink
// queue, this sink with a 64-message in-flight window) -> mosquitto ->
// mosquitto_sub. b.N is the number of messages; run with -benchtime Nx.
func BenchmarkEndToEnd(b *testing.B) { endToEnd(b, 0) }

// BenchmarkEndToEndPaced offers 2,000 msg/s to both paths, so latency is
// the service time of each path rather than time spent queued.
func BenchmarkEndToEndPaced(b *testing.B) { endToEnd(b, 2000) }

// pace sleeps until message i of a stream at rate msg/s is due; rate 0
// does not wait.
func pace(start time.Time, i, rate int) {
	if rate > 0 {
		if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
			time.Sleep(d)
		}
	}
}

func endToEnd(b *testing.B, rate int) {
	testenv.RequireCommand(b, "mosquitto_pub")
	broker := startMosquitto(b, nil)

	b.Run("reference", func(b *testing.B) {
		n := b.N
		sub := startSubscriber(b, broker, "ref/#")
		cmd := exec.Command(testenv.RequireCommand(b, "mosquitto_pub"), "-h", "127.0.0.1", "-p", strconv.Itoa(broker.port),
			"-q", "1", "-M", "64", "-t", "ref/data", "-l")
		in, err := cmd.StdinPipe()
		if err != nil {
			b.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond) // connected before the clock starts
		w := bufio.NewWriterSize(in, 64<<10)
		pad := bytes.Repeat([]byte("x"), payloadPad)
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < n; i++ {
			if rate > 0 {
				_ = w.Flush()
				pace(start, i, rate)
			}
			line := strconv.AppendInt(nil, time.Now().UnixNano(), 10)
			line = append(line, ' ')
			line = append(line, pad...)
			line = append(line, '\n')
			if _, err := w.Write(line); err != nil {
				b.Fatal(err)
			}
			if i%64 == 63 {
				_ = w.Flush()
			}
		}
		_ = w.Flush()
		_ = in.Close()
		sub.wait(b, n)
		b.StopTimer()
		_ = cmd.Wait()
		sub.report(b, n, start, func(l []byte) (time.Time, bool) {
			i := bytes.IndexByte(l, ' ')
			if i < 0 {
				return time.Time{}, false
			}
			ns, err := strconv.ParseInt(string(l[:i]), 10, 64)
			return time.Unix(0, ns), err == nil
		})
	})

	b.Run("gateway", func(b *testing.B) {
		n := b.N
		sub := startSubscriber(b, broker, "gw/#")
		sink, err := New("bench", Config{Broker: broker.url(), ClientID: "gw-bench", InFlight: 64})
		if err != nil {
			b.Fatal(err)
		}
		defer sink.Close()
		g, err := gateway.New(gateway.WithSink("cloud", sink), gateway.WithQoS(1), gateway.WithLogger(discard()))
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- g.Run(ctx) }()
		defer func() { cancel(); <-done }()
		for sink.Check(ctx) != nil {
			time.Sleep(10 * time.Millisecond)
		}
		payload := bytes.Repeat([]byte{0xab}, 180)
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < n; i++ {
			pace(start, i, rate)
			f := gateway.AcquireFrame()
			f.Device, f.Topic = "dev"+strconv.Itoa(i%16), "env"
			f.Payload = append(f.Payload, payload...)
			if err := g.Inject(ctx, f); err != nil {
				b.Fatal(err)
			}
		}
		sub.wait(b, n)
		b.StopTimer()
		sub.report(b, n, start, func(l []byte) (time.Time, bool) {
			const key = `"time":"`
			i := bytes.Index(l, []byte(key))
			if i < 0 {
				return time.Time{}, false
			}
			rest := l[i+len(key):]
			j := bytes.IndexByte(rest, '"')
			if j < 0 {
				return time.Time{}, false
			}
			t, err := time.Parse(time.RFC3339Nano, string(rest[:j]))
			return t, err == nil
		})
	})
}
