//go:build linux

package mqtt

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

// countingUplink accepts every frame and counts it.
type countingUplink struct{ n atomic.Uint64 }

func (u *countingUplink) Deliver(_ context.Context, f *gateway.Frame) error {
	f.Release()
	u.n.Add(1)
	return nil
}

func rssKiB(tb testing.TB) int {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	tb.Skip("no VmRSS")
	return 0
}

// settledRSS is the RSS after a few GC cycles: each cycle halves the
// stacks of goroutines that use less than a quarter of theirs, as the
// runtime's periodic GC does over time in a long-running gateway.
func settledRSS(tb testing.TB) int {
	for i := 0; i < 5; i++ {
		runtime.GC()
	}
	debug.FreeOSMemory()
	time.Sleep(200 * time.Millisecond)
	return rssKiB(tb)
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runtimeMetrics is where the gateway process's memory is.
type runtimeMetrics struct {
	heap, stacks, stackUsed, startStack, goroutines uint64
}

// readRuntimeMetrics reads heap in use, goroutine stacks (allocated, and
// the part in use that the last GC scanned), the starting stack size of
// new goroutines and the goroutine count.
func readRuntimeMetrics() runtimeMetrics {
	ss := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/gc/scan/stack:bytes"}, {Name: "/gc/stack/starting-size:bytes"}, {Name: "/sched/goroutines:goroutines"}}
	metrics.Read(ss)
	v := func(i int) uint64 {
		if ss[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return ss[i].Value.Uint64()
	}
	return runtimeMetrics{heap: v(0), stacks: v(1), stackUsed: v(2), startStack: v(3), goroutines: v(4)}
}

// BenchmarkMQTTListenerSessions connects MQTT_SESSIONS (default 10000)
// device sessions from a separate load-generator process, spread over
// 127.0.0.1-127.0.0.250 source addresses, and reports the gateway
// process's RSS per idle session and the msg/s of QoS 0 PUBLISHes that
// reach the Uplink while every session publishes, with the process's CPU
// time per message, and where the idle memory is: goroutine stacks
// (allocated and in use), heap and goroutines per session. b.N is not
// used: one iteration is the whole scenario. MQTT_READ_BUFFER sets the
// session read buffer (WithSessionLimits); MQTT_HEAPPROFILE names a file
// for a heap profile taken with all sessions idle; MQTT_SUBSCRIBE=1 has
// every session subscribe to its command topic after connecting.
//
//	go test -run '^$' -bench BenchmarkMQTTListenerSessions -benchtime 1x ./connector/mqtt
func BenchmarkMQTTListenerSessions(b *testing.B) {
	sessions := 10000
	if v, err := strconv.Atoi(os.Getenv("MQTT_SESSIONS")); err == nil && v > 0 {
		sessions = v
	}
	up := &countingUplink{}
	var opts []ListenerOption
	for i := 0; i < sessions; i++ {
		opts = append(opts, WithDeviceAuth(DeviceAuth{Username: "d" + strconv.Itoa(i), Password: "p" + strconv.Itoa(i)}))
	}
	if v, err := strconv.Atoi(os.Getenv("MQTT_READ_BUFFER")); err == nil {
		opts = append(opts, WithSessionLimits(32, v, 256<<10, time.Hour))
	}
	l, err := NewListener(append(opts, WithListenAddress("127.0.0.1:0"), WithMaxSessions(sessions+10),
		WithListenerLogger(conntest.QuietLogger()))...)
	if err != nil {
		b.Fatal(err)
	}
	if err := l.Connect(context.Background(), up); err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = l.Disconnect(ctx)
	}()
	base := settledRSS(b)
	baseRM := readRuntimeMetrics()

	gen := exec.Command(os.Args[0], "-test.run", "^TestMQTTLoadGenerator$", "-test.timeout", "10m")
	gen.Env = append(os.Environ(), "MQTT_LOADGEN_ADDR="+l.Addr().String(), "MQTT_LOADGEN_SESSIONS="+strconv.Itoa(sessions))
	stdin, _ := gen.StdinPipe()
	stdout, _ := gen.StdoutPipe()
	gen.Stderr = os.Stderr
	if err := gen.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = gen.Process.Kill(); _ = gen.Wait() }()
	lines := bufio.NewScanner(stdout)
	expect := func(word string) {
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), word) {
				return
			}
		}
		b.Fatalf("load generator ended before %q", word)
	}
	start := time.Now()
	expect("CONNECTED")
	connectTime := time.Since(start)
	deadline := time.Now().Add(time.Minute)
	for l.Sessions() < sessions && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := l.Sessions(); got < sessions {
		b.Fatalf("only %d of %d sessions up", got, sessions)
	}
	idle := settledRSS(b)
	rm := readRuntimeMetrics()
	b.Logf("heap in use %d KiB, stacks %d KiB (%d KiB of them used at the last GC), goroutines %d, starting stack %d B",
		rm.heap/1024, rm.stacks/1024, rm.stackUsed/1024, rm.goroutines, rm.startStack)
	if p := os.Getenv("MQTT_HEAPPROFILE"); p != "" {
		f, _ := os.Create(p)
		_ = pprof.WriteHeapProfile(f)
		f.Close()
	}
	perSession := float64(idle-base) * 1024 / float64(sessions)
	b.ReportMetric(float64(rm.stacks-baseRM.stacks)/float64(sessions), "B-stack/session")
	b.ReportMetric(float64(rm.stackUsed-baseRM.stackUsed)/float64(sessions), "B-stack-used/session")
	b.ReportMetric(float64(rm.heap-baseRM.heap)/float64(sessions), "B-heap/session")
	b.ReportMetric(float64(rm.goroutines-baseRM.goroutines)/float64(sessions), "goroutines/session")

	// Publishing phase: every session publishes; count what arrives.
	_, _ = io.WriteString(stdin, "PUBLISH\n")
	expect("PUBLISHING")
	time.Sleep(time.Second) // ramp up
	n0, t0, c0 := up.n.Load(), time.Now(), cpuTime()
	time.Sleep(5 * time.Second)
	n1, t1, c1 := up.n.Load(), time.Now(), cpuTime()
	_, _ = io.WriteString(stdin, "STOP\n")
	rate := float64(n1-n0) / t1.Sub(t0).Seconds()
	if n1 > n0 {
		// CPU time of this process per message: less sensitive than
		// msg/s to what else runs on the machine.
		b.ReportMetric(float64(c1-c0)/float64(n1-n0), "ns-cpu/msg")
	}

	b.ReportMetric(float64(sessions), "sessions")
	b.ReportMetric(perSession, "B-rss/idle-session")
	b.ReportMetric(float64(idle-base)/1024, "MiB-rss-sessions")
	b.ReportMetric(connectTime.Seconds(), "s-connect-all")
	b.ReportMetric(rate, "msg/s")
	b.Logf("sessions %d: base RSS %d KiB, idle RSS %d KiB (%.0f B/session), connect %v, %.0f msg/s",
		sessions, base, idle, perSession, connectTime.Round(time.Millisecond), rate)
}

// TestMQTTLoadGenerator is the load-generator process of
// BenchmarkMQTTListenerSessions; it does nothing unless started by it.
// It speaks just enough MQTT 3.1.1: CONNECT, CONNACK, QoS 0 PUBLISH; with
// MQTT_LOADGEN_RAW set it only opens the TCP connections; with
// MQTT_SUBSCRIBE set every session also subscribes to its command topic.
func TestMQTTLoadGenerator(t *testing.T) {
	addr := os.Getenv("MQTT_LOADGEN_ADDR")
	if addr == "" {
		return // runs only as BenchmarkMQTTListenerSessions' load generator: not a test of its own
	}
	sessions, _ := strconv.Atoi(os.Getenv("MQTT_LOADGEN_SESSIONS"))
	raw := os.Getenv("MQTT_LOADGEN_RAW") != "" // only connect TCP (BenchmarkIdleSessionFloor)
	subscribe := os.Getenv("MQTT_SUBSCRIBE") != ""
	raddr, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, sessions)
	var wg sync.WaitGroup
	errs := make(chan error, sessions)
	sem := make(chan struct{}, 256)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(1+i%250))}, Timeout: 10 * time.Second}
			c, err := d.Dial("tcp", raddr.String())
			if err != nil {
				errs <- err
				return
			}
			if raw {
				conns[i] = c
				return
			}
			id := strconv.Itoa(i)
			if _, err := c.Write(connectPacket("d"+id, "d"+id, "p"+id)); err != nil {
				errs <- err
				return
			}
			ack := make([]byte, 4)
			if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
				errs <- fmt.Errorf("session %d: connack %x %v", i, ack, err)
				return
			}
			if subscribe {
				// Like a device waiting for commands: one subscription.
				if _, err := c.Write(subscribePacket(1, "devices/d"+id+"/cmd/#", 1)); err != nil {
					errs <- err
					return
				}
				suback := make([]byte, 5)
				if _, err := io.ReadFull(c, suback); err != nil || suback[0] != 0x90 || suback[4] != 1 {
					errs <- fmt.Errorf("session %d: suback %x %v", i, suback, err)
					return
				}
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fmt.Println("CONNECTED")
	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() || in.Text() != "PUBLISH" {
		return
	}
	// Each session publishes a burst of 8 messages per round; rounds go as
	// fast as the gateway reads (QoS 0 has no acks, so TCP flow control
	// is the only brake).
	var stop atomic.Bool
	batches := make([][]byte, sessions)
	for i := range batches {
		var buf []byte
		topic := "devices/d" + strconv.Itoa(i) + "/t"
		for k := 0; k < 8; k++ {
			buf = append(buf, publishPacket(topic, []byte(`{"v":21.5}`))...)
		}
		batches[i] = buf
	}
	workers := 64
	var pw sync.WaitGroup
	for w := 0; w < workers; w++ {
		pw.Add(1)
		go func() {
			defer pw.Done()
			for !stop.Load() {
				for i := w; i < sessions; i += workers {
					_ = conns[i].SetWriteDeadline(time.Now().Add(2 * time.Second))
					if _, err := conns[i].Write(batches[i]); err != nil {
						return
					}
				}
			}
		}()
	}
	fmt.Println("PUBLISHING")
	in.Scan() // STOP or EOF
	stop.Store(true)
	pw.Wait()
	for _, c := range conns {
		c.Close()
	}
}
