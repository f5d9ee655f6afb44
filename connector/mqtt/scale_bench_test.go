//go:build linux

package mqtt

import (
	"bufio"
	"context"
	"encoding/binary"
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
	heap, stacks, stackUsed, startStack, goroutines, free uint64
}

// readRuntimeMetrics reads heap in use, goroutine stacks (allocated, and
// the part in use that the last GC scanned), the starting stack size of
// new goroutines, the goroutine count and the free heap memory not yet
// returned to the OS (resident: part of RSS).
func readRuntimeMetrics() runtimeMetrics {
	ss := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"},
		{Name: "/gc/scan/stack:bytes"}, {Name: "/gc/stack/starting-size:bytes"}, {Name: "/sched/goroutines:goroutines"},
		{Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(ss)
	v := func(i int) uint64 {
		if ss[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return ss[i].Value.Uint64()
	}
	return runtimeMetrics{heap: v(0), stacks: v(1), stackUsed: v(2), startStack: v(3), goroutines: v(4), free: v(5)}
}

// BenchmarkMQTTListenerSessions connects MQTT_SESSIONS (default 10000)
// device sessions from a separate load-generator process, spread over
// 127.0.0.1-127.0.0.250 source addresses, and reports the gateway
// process's memory per session two ways: RSS as ps shows it (VmRSS, with
// the default GC and nothing forced: "B-rss-default/...") and RSS after
// forced GCs and FreeOSMemory ("B-rss/..."). It measures both with every
// session idle, then with every session active: each publishes one QoS 1
// message every MQTT_ACTIVE_PERIOD (default 10s), the sessions spread
// evenly over the period, and waits for its PUBACK, for
// MQTT_ACTIVE_CYCLES periods (default 4; 0 skips the active phase). The
// active default-GC figure is the mean of one VmRSS sample per second over
// the last period. Then every session publishes QoS 0 as fast as the
// gateway reads, for the msg/s that reach the Uplink, with the process's
// CPU time per message. It also reports where the memory is: goroutine
// stacks (allocated and in use), heap and goroutines per session. b.N is
// not used: one iteration is the whole scenario. MQTT_READ_BUFFER sets the
// session read buffer (WithSessionLimits); MQTT_HEAPPROFILE names a file
// for a heap profile taken with all sessions idle (and the same name with
// ".active" at the end of the active phase); MQTT_SUBSCRIBE=1 has every
// session subscribe to its command topic after connecting.
//
//	go test -run '^$' -bench BenchmarkMQTTListenerSessions -benchtime 1x ./connector/mqtt
func BenchmarkMQTTListenerSessions(b *testing.B) {
	sessions := 10000
	if v, err := strconv.Atoi(os.Getenv("MQTT_SESSIONS")); err == nil && v > 0 {
		sessions = v
	}
	cycles, period := 4, 10*time.Second
	if v, err := strconv.Atoi(os.Getenv("MQTT_ACTIVE_CYCLES")); err == nil && v >= 0 {
		cycles = v
	}
	if v, err := time.ParseDuration(os.Getenv("MQTT_ACTIVE_PERIOD")); err == nil && v > 0 {
		period = v
	}
	raiseFileLimit(b, sessions+1024)
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
	baseRaw := rssKiB(b)
	base := settledRSS(b)
	baseRM := readRuntimeMetrics()

	gen := exec.Command(os.Args[0], "-test.run", "^TestMQTTLoadGenerator$", "-test.timeout", "30m")
	gen.Env = append(os.Environ(), "MQTT_LOADGEN_ADDR="+l.Addr().String(), "MQTT_LOADGEN_SESSIONS="+strconv.Itoa(sessions))
	stdin, _ := gen.StdinPipe()
	stdout, _ := gen.StdoutPipe()
	gen.Stderr = os.Stderr
	if err := gen.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = gen.Process.Kill(); _ = gen.Wait() }()
	lines := bufio.NewScanner(stdout)
	expect := func(word string) string {
		for lines.Scan() {
			if strings.HasPrefix(lines.Text(), word) {
				return lines.Text()
			}
		}
		b.Fatalf("load generator ended before %q", word)
		return ""
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
	n := float64(sessions)
	time.Sleep(time.Second) // let the last sessions block in Read
	idleRaw := rssKiB(b)
	rawRM := readRuntimeMetrics()
	idle := settledRSS(b)
	rm := readRuntimeMetrics()
	b.Logf("idle, default GC: RSS %d KiB over base %d KiB (%.0f B/session), heap %d KiB, stacks %d KiB",
		idleRaw-baseRaw, baseRaw, float64(idleRaw-baseRaw)*1024/n, rawRM.heap/1024, rawRM.stacks/1024)
	b.Logf("idle, forced GC: heap in use %d KiB, stacks %d KiB (%d KiB of them used at the last GC), goroutines %d, starting stack %d B",
		rm.heap/1024, rm.stacks/1024, rm.stackUsed/1024, rm.goroutines, rm.startStack)
	if p := os.Getenv("MQTT_HEAPPROFILE"); p != "" {
		writeHeapProfile(p)
	}
	perSession := float64(idle-base) * 1024 / n
	b.ReportMetric(float64(idleRaw-baseRaw)*1024/n, "B-rss-default/idle-session")
	b.ReportMetric(float64(rm.stacks-baseRM.stacks)/n, "B-stack/session")
	b.ReportMetric(float64(rm.stackUsed-baseRM.stackUsed)/n, "B-stack-used/session")
	b.ReportMetric(float64(rm.heap-baseRM.heap)/n, "B-heap/session")
	b.ReportMetric(float64(rm.goroutines-baseRM.goroutines)/n, "goroutines/session")

	if cycles > 0 {
		// Active phase: QoS 1 every period from every session.
		_, _ = fmt.Fprintf(stdin, "ACTIVE %s\n", period)
		expect("ACTIVE")
		time.Sleep(time.Duration(cycles-1) * period)
		var sum, samples int
		var last runtimeMetrics
		for end := time.Now().Add(period); time.Now().Before(end); {
			time.Sleep(time.Second)
			sum += rssKiB(b)
			samples++
			last = readRuntimeMetrics()
		}
		activeRaw := float64(sum)/float64(samples) - float64(baseRaw)
		active := settledRSS(b)
		arm := readRuntimeMetrics()
		if p := os.Getenv("MQTT_HEAPPROFILE"); p != "" {
			writeHeapProfile(p + ".active")
		}
		_, _ = io.WriteString(stdin, "IDLE\n")
		acked := expect("ACKED")
		var nAcked, nFailed int
		_, _ = fmt.Sscanf(acked, "ACKED %d FAILED %d", &nAcked, &nFailed)
		if nFailed > 0 || nAcked < sessions*(cycles-1) {
			b.Fatalf("active phase: %s, want at least %d acked and none failed", acked, sessions*(cycles-1))
		}
		b.Logf("active, default GC: RSS %.0f KiB over base (%.0f B/session), heap %d KiB, stacks %d KiB, free heap not returned %d KiB; forced GC: %d KiB (%.0f B/session), stacks %d KiB; %s",
			activeRaw, activeRaw*1024/n, last.heap/1024, last.stacks/1024, last.free/1024, active-base, float64(active-base)*1024/n, arm.stacks/1024, acked)
		b.ReportMetric(activeRaw*1024/n, "B-rss-default/active-session")
		b.ReportMetric(float64(active-base)*1024/n, "B-rss/active-session")
		b.ReportMetric((float64(last.stacks)-float64(baseRM.stacks))/n, "B-stack-default/active-session")
		b.ReportMetric((float64(last.heap)-float64(baseRM.heap))/n, "B-heap-default/active-session")
	}

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

	b.ReportMetric(n, "sessions")
	b.ReportMetric(perSession, "B-rss/idle-session")
	b.ReportMetric(float64(idle-base)/1024, "MiB-rss-sessions")
	b.ReportMetric(connectTime.Seconds(), "s-connect-all")
	b.ReportMetric(rate, "msg/s")
	b.Logf("sessions %d: base RSS %d KiB, idle RSS %d KiB (%.0f B/session), connect %v, %.0f msg/s",
		sessions, base, idle, perSession, connectTime.Round(time.Millisecond), rate)
}

// raiseFileLimit raises the soft (and if need be the hard) limit on open
// files to n for this process and the load generator it starts; raising
// the hard limit needs privileges, so a failure is only logged.
func raiseFileLimit(tb testing.TB, n int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur >= uint64(n) {
		return
	}
	want := lim
	want.Cur = uint64(n)
	want.Max = max(lim.Max, uint64(n))
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		want.Cur, want.Max = lim.Max, lim.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
		tb.Logf("open files limited to %d: %v", lim.Max, err)
	}
}

func writeHeapProfile(name string) {
	f, err := os.Create(name)
	if err != nil {
		return
	}
	_ = pprof.WriteHeapProfile(f)
	_ = f.Close()
}

// TestMQTTLoadGenerator is the load-generator process of
// BenchmarkMQTTListenerSessions; it does nothing unless started by it.
// It speaks just enough MQTT 3.1.1: CONNECT, CONNACK, QoS 0 and QoS 1
// PUBLISH, PUBACK. It reads commands on stdin: "ACTIVE <period>" starts
// the active phase, ended by the next line; "PUBLISH" the QoS 0 phase,
// ended by the next line. With
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
	for {
		if !in.Scan() {
			return
		}
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		if cmd == "PUBLISH" {
			break
		}
		if cmd != "ACTIVE" {
			return
		}
		period, err := time.ParseDuration(arg)
		if err != nil {
			t.Fatal(err)
		}
		acked, failed := activeSessions(conns, period, func() { fmt.Println("ACTIVE") }, func() { in.Scan() })
		fmt.Printf("ACKED %d FAILED %d\n", acked, failed)
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

// activeSessions has every connection publish one QoS 1 message per
// period, connection i at offset i*period/len(conns), and read its PUBACK,
// until stop returns. It calls started once every connection's loop runs
// and returns how many PUBLISHes were acknowledged and how many failed.
func activeSessions(conns []net.Conn, period time.Duration, started, stop func()) (acked, failed int64) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var nAcked, nFailed atomic.Int64
	t0 := time.Now()
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := "devices/d" + strconv.Itoa(i) + "/t"
			ack := make([]byte, 4)
			next := t0.Add(time.Duration(i) * period / time.Duration(len(conns)))
			for id := uint16(1); ; id = id%65535 + 1 {
				tm := time.NewTimer(time.Until(next))
				select {
				case <-done:
					tm.Stop()
					return
				case <-tm.C:
				}
				next = next.Add(period)
				_ = c.SetDeadline(time.Now().Add(period))
				if _, err := c.Write(publishQoS1Packet(topic, id, []byte(`{"v":21.5}`))); err != nil {
					nFailed.Add(1)
					return
				}
				if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x40 || ack[1] != 2 || binary.BigEndian.Uint16(ack[2:]) != id {
					nFailed.Add(1)
					return
				}
				nAcked.Add(1)
			}
		}()
	}
	started()
	stop()
	close(done)
	wg.Wait()
	for _, c := range conns {
		_ = c.SetDeadline(time.Time{})
	}
	return nAcked.Load(), nFailed.Load()
}
