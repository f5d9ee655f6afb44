package dtlsx

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

type stormResult struct {
	elapsed     time.Duration // restart storm: first dial to last established
	server      Stats
	cache       CacheStats
	echoes      int         // bystander round trips during the storm
	echoFails   int         // bystander round trips that failed
	echoDuring  echoLatency // bystander round trips during the storm
	echoBefore  echoLatency // and before it
	failedDials int
	rcvbufDrops int64  // kernel UDP receive-buffer overflows during the storm (all sockets)
	sched       string // the gateway process's Go scheduler during the storm
}

// echoLatency is the distribution of bystander round trips.
type echoLatency struct{ p50, p90, p99 time.Duration }

func (q echoLatency) String() string {
	return fmt.Sprintf("p50 %v p90 %v p99 %v", q.p50, q.p90, q.p99)
}

// udpRcvbufErrors reads the host's UDP RcvbufErrors counter, or -1.
func udpRcvbufErrors() int64 {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return -1
	}
	var names, values []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "Udp: ") {
			continue
		}
		if names == nil {
			names = strings.Fields(line)
		} else {
			values = strings.Fields(line)
		}
	}
	for i, n := range names {
		if n == "RcvbufErrors" && i < len(values) {
			v, _ := strconv.ParseInt(values[i], 10, 64)
			return v
		}
	}
	return -1
}

// childProcess is this test binary re-executed to run one side of a test
// (the storm's devices or bystanders, the benchmark's server) in a process
// of its own, as real devices are on other machines: each process has its
// own Go scheduler, and what they share is the machine's cores. It is
// driven line by line over stdin and stdout.
type childProcess struct {
	stdin io.WriteCloser
	out   *bufio.Reader
}

func startStormDevices(t testing.TB, addr *net.UDPAddr, n int) *childProcess {
	return startChildProcess(t, "TestStormDevicesProcess", fmt.Sprintf("DTLSX_STORM_DEVICES=%d@%s", n, addr))
}

// startChildProcess re-executes this test binary running only test, with
// env added, and talks to it line by line over its stdin and stdout.
func startChildProcess(t testing.TB, test, env string) *childProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	// GODEBUG (gctrace=1, say) is for the gateway's process only.
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "GODEBUG=") }), env)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	return &childProcess{stdin: stdin, out: bufio.NewReader(stdout)}
}

func (d *childProcess) command(t testing.TB, cmd string) string {
	t.Helper()
	if _, err := io.WriteString(d.stdin, cmd+"\n"); err != nil {
		t.Fatalf("devices process: %v", err)
	}
	line, err := d.out.ReadString('\n')
	if err != nil {
		t.Fatalf("devices process: %s: %v", cmd, err)
	}
	return strings.TrimSpace(line)
}

// dial has every device handshake (128 at a time) and returns how many
// failed and how long all took.
func (d *childProcess) dial(t testing.TB) (failed int, took time.Duration) {
	start := time.Now()
	line := d.command(t, "dial")
	took = time.Since(start)
	if _, err := fmt.Sscanf(line, "DIALED %d", &failed); err != nil {
		t.Fatalf("devices process: %q", line)
	}
	return failed, took
}

func (d *childProcess) closeAll(t testing.TB) {
	if line := d.command(t, "close"); line != "CLOSED" {
		t.Fatalf("devices process: %q", line)
	}
}

// stormSpec reads a child process's "n@address" from env; ok is false
// when the variable is unset (the test binary was not started as that
// child).
func stormSpec(t *testing.T, env string) (n int, raddr *net.UDPAddr, ok bool) {
	spec := os.Getenv(env)
	if spec == "" {
		return 0, nil, false
	}
	ns, addr, _ := strings.Cut(spec, "@")
	n, err := strconv.Atoi(ns)
	if err != nil {
		t.Fatalf("%s=%q: %v", env, spec, err)
	}
	if raddr, err = net.ResolveUDPAddr("udp", addr); err != nil {
		t.Fatalf("%s=%q: %v", env, spec, err)
	}
	return n, raddr, true
}

// TestStormDevicesProcess is the device side of TestReconnectStorm, run
// in a child process: on "dial" every device handshakes (each resumes its
// own session when it has one), on "close" every connection closes.
func TestStormDevicesProcess(t *testing.T) {
	n, raddr, ok := stormSpec(t, "DTLSX_STORM_DEVICES")
	if !ok {
		return // helper process for TestReconnectStorm: not a test of its own
	}
	if os.Getenv("DTLSX_STORM_PIN") != "" {
		if err := pinThreads(1, false); err != nil {
			t.Fatal(err)
		}
	}
	stores := make([]*mapStore, n)
	for i := range stores {
		stores[i] = newMapStore()
	}
	conns := make([]*dtls.Conn, n)
	closeAll := func() {
		for i, c := range conns {
			if c != nil {
				_ = c.Close()
				conns[i] = nil
			}
		}
	}
	defer closeAll()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "dial":
			var failed atomic.Int64
			var wg sync.WaitGroup
			sem := make(chan struct{}, 128) // devices handshaking at once
			for i := range conns {
				wg.Add(1)
				sem <- struct{}{}
				go func(i int) {
					defer wg.Done()
					defer func() { <-sem }()
					c, err := dtls.DialWithOptions("udp", raddr, dtls.WithInsecureSkipVerify(true),
						dtls.WithSessionStore(stores[i]), dtls.WithExtendedMasterSecret(dtls.RequestExtendedMasterSecret),
						dtls.WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
					if err != nil {
						failed.Add(1)
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					if err := c.HandshakeContext(ctx); err != nil {
						failed.Add(1)
						_ = c.Close()
						return
					}
					conns[i] = c
				}(i)
			}
			wg.Wait()
			fmt.Printf("DIALED %d\n", failed.Load())
		case "close":
			closeAll()
			fmt.Println("CLOSED")
		}
	}
}

// TestStormBystandersProcess is the bystander side of TestReconnectStorm,
// run in a child process: devices established before the storm that echo
// a message each every 5 ms (2 s deadline). "connect" dials them, "start"
// starts echoing, "stop" stops and reports the count, failures and p99.
func TestStormBystandersProcess(t *testing.T) {
	n, raddr, ok := stormSpec(t, "DTLSX_STORM_BYSTANDERS")
	if !ok {
		return // helper process for TestReconnectStorm: not a test of its own
	}
	if os.Getenv("DTLSX_STORM_PIN") != "" {
		runtime.GOMAXPROCS(1)
		if err := pinThreads(1, true); err != nil {
			t.Fatal(err)
		}
	}
	conns := make([]*dtls.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	var stop chan struct{}
	var wg sync.WaitGroup
	var lat []time.Duration
	var fails int
	ping := func(stop <-chan struct{}) {
		defer wg.Done()
		buf := make([]byte, 64)
		for round := 0; ; round++ {
			for _, c := range conns {
				start := time.Now()
				_ = c.SetDeadline(start.Add(2 * time.Second))
				msg := []byte("bystander " + strconv.Itoa(round))
				if _, err := c.Write(msg); err != nil {
					fails++
					continue
				}
				if k, err := c.Read(buf); err != nil || !bytes.Equal(buf[:k], msg) {
					fails++
					continue
				}
				lat = append(lat, time.Since(start))
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "connect":
			for i := 0; i < n; i++ {
				c, err := dtls.DialWithOptions("udp", raddr, dtls.WithInsecureSkipVerify(true),
					dtls.WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256))
				if err == nil {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					err = c.HandshakeContext(ctx)
					cancel()
				}
				if err != nil {
					fmt.Printf("FAILED %v\n", err)
					return
				}
				conns = append(conns, c)
			}
			fmt.Println("CONNECTED")
		case "start":
			lat, fails = lat[:0], 0
			stop = make(chan struct{})
			wg.Add(1)
			go ping(stop)
			fmt.Println("STARTED")
		case "stop":
			close(stop)
			wg.Wait()
			var q [3]time.Duration // p50, p90, p99
			if len(lat) > 0 {
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				for i, p := range []int{50, 90, 99} {
					q[i] = lat[len(lat)*p/100]
				}
			}
			fmt.Printf("ECHOES %d %d %d %d %d\n", len(lat), fails, q[0], q[1], q[2])
		}
	}
}

// runStorm connects n clients to a gateway, restarts the gateway on the
// same port (with the persisted session store, or with an empty memory
// cache) and measures how long all n take to be established again, while
// bystander devices that connected after the restart keep exchanging
// messages.
func runStorm(t testing.TB, n int, persisted bool) stormResult {
	pki := newPKI(t)
	ring, _ := NewKeyRing(1, bytes.Repeat([]byte{3}, 32))
	store, err := OpenSQLiteStore(context.Background(), filepath.Join(t.TempDir(), "sessions.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	gateway := func(addr string, withStore bool) (*Listener, *SessionCache) {
		var copts []CacheOption
		if withStore {
			copts = append(copts, WithPersistentStore(store, ring))
		}
		cache, err := NewSessionCache(copts...)
		if err != nil {
			t.Fatal(err)
		}
		opts := []Option{WithCertificate(pki.server), WithSessionCache(cache),
			WithSourceRate(0, 0), WithMaxPendingHandshakes(n + 64), WithAcceptBacklog(n + 64),
			WithCipherSuites(dtls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)}
		if v := os.Getenv("DTLSX_STORM_WORKERS"); v != "" { // compare with the default
			w, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("DTLSX_STORM_WORKERS=%q", v)
			}
			opts = append(opts, WithHandshakeWorkers(w))
		}
		if v := os.Getenv("DTLSX_STORM_MAXFULL"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("DTLSX_STORM_MAXFULL=%q", v)
			}
			opts = append(opts, WithMaxFullHandshakes(n))
		}
		if os.Getenv("DTLSX_STORM_NOPASS") != "" { // compare without netPass
			opts = append(opts, func(s *settings) error { s.noNetPass = true; return nil })
		}
		if os.Getenv("DTLSX_STORM_FAST") == "0" { // compare with pion's resumption
			opts = append(opts, WithFastResumption(false))
		}
		l, err := Listen("udp", addr, opts...)
		if err != nil {
			t.Fatal(err)
		}
		serveEcho(t, l)
		return l, cache
	}
	l1, cache1 := gateway("127.0.0.1:0", true)
	addr := l1.Addr().(*net.UDPAddr)
	devices := startStormDevices(t, addr, n)
	if failed, _ := devices.dial(t); failed > 0 {
		t.Fatalf("%d of %d initial handshakes failed", failed, n)
	}
	// Restart: the old process's sessions reach the store on Close.
	_ = l1.Close()
	_ = cache1.Close()
	devices.closeAll(t)
	// A restarted gateway is a new process: the old one's heap (thousands
	// of closed connections) is not there to be swept during the storm.
	runtime.GC()

	l2, cache2 := gateway(addr.String(), persisted)
	defer cache2.Close()
	// Bystanders are devices too: they run in a process of their own.
	const bystanders = 4
	watch := startChildProcess(t, "TestStormBystandersProcess", fmt.Sprintf("DTLSX_STORM_BYSTANDERS=%d@%s", bystanders, addr))
	if line := watch.command(t, "connect"); line != "CONNECTED" {
		t.Fatalf("bystanders: %q", line)
	}
	echoes := func() (n, fails int, q echoLatency) {
		line := watch.command(t, "stop")
		if _, err := fmt.Sscanf(line, "ECHOES %d %d %d %d %d", &n, &fails, &q.p50, &q.p90, &q.p99); err != nil {
			t.Fatalf("bystanders: %q", line)
		}
		return n, fails, q
	}
	var res stormResult
	watch.command(t, "start")
	// Long enough for the bystanders to count as established traffic (a
	// second), which the listener's default handshake bounds protect.
	time.Sleep(liveAge + 200*time.Millisecond)
	_, _, res.echoBefore = echoes()
	watch.command(t, "start")
	drops0 := udpRcvbufErrors()
	probe := startSchedProbe()
	res.failedDials, res.elapsed = devices.dial(t)
	res.sched = probe.end()
	res.rcvbufDrops = udpRcvbufErrors() - drops0
	res.echoes, res.echoFails, res.echoDuring = echoes()
	// A device's handshake ends when it sends its last flight; the gateway
	// counts a moment later, when that flight arrives (or, if it was lost,
	// after the gateway's retransmission timer, 1 s).
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if st := l2.Stats(); st.HandshakesFull+st.HandshakesResumed >= uint64(n+bystanders-res.failedDials) {
			break
		}
	}
	res.server, res.cache = l2.Stats(), cache2.Stats()
	// Only now: a device whose last flight was lost answers the gateway's
	// retransmission while it is connected.
	devices.closeAll(t)
	return res
}

// TestReconnectStorm restarts a gateway under n devices (40 here; set
// DTLSX_STORM_CLIENTS=5000 for the full run recorded in BENCHMARKS.md)
// with and without the persisted session store. DTLSX_STORM_FAST=0 sends
// the resumptions through pion's handshake instead of the listener's;
// DTLSX_STORM_WORKERS and DTLSX_STORM_MAXFULL set WithHandshakeWorkers
// and WithMaxFullHandshakes; DTLSX_STORM_NOPASS=1 turns netPass off.
//
// DTLSX_STORM_PIN=1 (root, two cores) gives the gateway a core of its own,
// as it has when its devices are other machines: this process runs on CPU
// 0 with GOMAXPROCS 1 (or DTLSX_STORM_PROCS), both device processes on
// CPU 1, the bystanders in the SCHED_FIFO class so that they answer as
// soon as a datagram arrives. The bystanders' latency then shows the
// gateway's part alone.
func TestReconnectStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("storm in -short mode")
	}
	if os.Getenv("DTLSX_STORM_PIN") != "" {
		procs := 1
		if v, err := strconv.Atoi(os.Getenv("DTLSX_STORM_PROCS")); err == nil {
			procs = v
		}
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		if err := pinThreads(0, false); err != nil {
			t.Fatal(err)
		}
	}
	n := 40
	if v := os.Getenv("DTLSX_STORM_CLIENTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n <= 0 {
			t.Fatalf("DTLSX_STORM_CLIENTS=%q", v)
		}
	}
	cold := runStorm(t, n, false)
	warm := runStorm(t, n, true)
	for _, r := range []struct {
		name string
		res  stormResult
	}{{"without store", cold}, {"with store", warm}} {
		t.Logf("%s: %d devices established in %v (%.0f/s); failed %d; full %d resumed %d (by the listener %d); store hits %d; bystanders: %d round trips, %d failed, %v (before: %v); admission waits %d, inbox drops %d, kernel UDP rcvbuf drops %d; gateway %s",
			r.name, n, r.res.elapsed, float64(n)/r.res.elapsed.Seconds(), r.res.failedDials,
			r.res.server.HandshakesFull, r.res.server.HandshakesResumed, r.res.server.ResumedFast, r.res.cache.StoreHits,
			r.res.echoes, r.res.echoFails, r.res.echoDuring, r.res.echoBefore,
			r.res.server.AdmissionWaits, r.res.server.InboxDrops, r.res.rcvbufDrops, r.res.sched)
		if r.res.failedDials != 0 || r.res.echoFails != 0 || r.res.echoes == 0 {
			t.Errorf("%s: %d dials and %d bystander round trips failed (%d succeeded)", r.name, r.res.failedDials, r.res.echoFails, r.res.echoes)
		}
	}
	t.Logf("restart storm speed-up with the persisted store: %.1fx", cold.elapsed.Seconds()/warm.elapsed.Seconds())
	if warm.server.HandshakesResumed != uint64(n) || warm.cache.StoreHits != uint64(n) {
		t.Errorf("with store: %d resumed, %d store hits; want %d of each; server %+v", warm.server.HandshakesResumed, warm.cache.StoreHits, n, warm.server)
	}
	if wantFast := os.Getenv("DTLSX_STORM_FAST") != "0"; wantFast && warm.server.ResumedFast != uint64(n) {
		t.Errorf("with store: %d of %d resumptions run by the listener; server %+v", warm.server.ResumedFast, n, warm.server)
	}
	if cold.server.HandshakesResumed != 0 || cold.server.HandshakesFull != uint64(n)+4 {
		t.Errorf("without store: %+v; want %d full handshakes", cold.server, n+4)
	}
}
