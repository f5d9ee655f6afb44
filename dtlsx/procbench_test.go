package dtlsx

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

// serverProcess is a benchmark server (stock pion or dtlsx) running in a
// child process, so its CPU time and allocations are measured apart from
// the clients'.
type serverProcess struct {
	*childProcess
	addr *net.UDPAddr
}

// serverUsage is what the child reports: process CPU time and heap
// allocations since it started.
type serverUsage struct {
	cpu            time.Duration
	mallocs, bytes uint64
}

func startServerProcess(t testing.TB, kind, impl string) *serverProcess {
	t.Helper()
	p := &serverProcess{childProcess: startChildProcess(t, "TestHandshakeServerProcess", "DTLSX_BENCH_SERVER="+kind+"/"+impl)}
	line, err := p.line("ADDR ")
	if err != nil {
		t.Fatalf("server process: %v", err)
	}
	if p.addr, err = net.ResolveUDPAddr("udp", line); err != nil {
		t.Fatal(err)
	}
	return p
}

// line reads the child's next line, which must start with prefix, and
// returns the rest.
func (p *serverProcess) line(prefix string) (string, error) {
	s, err := p.out.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading %q: %w", prefix, err)
	}
	rest, ok := strings.CutPrefix(strings.TrimSuffix(s, "\n"), prefix)
	if !ok {
		return "", fmt.Errorf("got %q, want %q", s, prefix)
	}
	return rest, nil
}

// served waits for the child to report one finished server-side connection.
func (p *serverProcess) served() error {
	_, err := p.line("SERVED")
	return err
}

func (p *serverProcess) usage() (serverUsage, error) {
	if _, err := io.WriteString(p.stdin, "usage\n"); err != nil {
		return serverUsage{}, err
	}
	s, err := p.line("USAGE ")
	if err != nil {
		return serverUsage{}, err
	}
	var u serverUsage
	var ns int64
	if _, err := fmt.Sscan(s, &ns, &u.mallocs, &u.bytes); err != nil {
		return u, fmt.Errorf("usage %q: %w", s, err)
	}
	u.cpu = time.Duration(ns)
	return u, nil
}

// TestHandshakeServerProcess is the server half of
// BenchmarkHandshakeServerProcess, run in a child process: it serves until
// stdin closes, reports each finished connection and, on request, its CPU
// time and allocations.
func TestHandshakeServerProcess(t *testing.T) {
	which := os.Getenv("DTLSX_BENCH_SERVER")
	if which == "" {
		return // helper process for BenchmarkHandshakeServerProcess: not a test of its own
	}
	kind, impl, _ := strings.Cut(which, "/")
	var psk PSKProvider
	if kind == "psk" {
		var tbl PSKTable
		_ = tbl.Set([]byte("bench"), []byte("0123456789abcdef"))
		psk = &tbl
	}
	var ln net.Listener
	for _, srv := range benchServers {
		if srv.name == impl {
			ln = srv.start(t, newPKI(t).server, psk)
		}
	}
	if ln == nil {
		t.Fatalf("no benchmark server %q", impl)
	}
	stop, served := acceptAndClose(ln)
	defer stop()
	if path := os.Getenv("DTLSX_BENCH_SERVER_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cmds := make(chan string)
	go func() { // ends when the parent closes stdin
		defer close(cmds)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
	}()
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "ADDR %s\n", ln.Addr())
	_ = w.Flush()
	for {
		select {
		case <-served:
			_, _ = w.WriteString("SERVED\n")
		case cmd, ok := <-cmds:
			if !ok {
				return
			}
			if cmd == "usage" {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				fmt.Fprintf(w, "USAGE %d %d %d\n", cpuTime().Nanoseconds(), ms.Mallocs, ms.TotalAlloc)
			}
		}
		_ = w.Flush()
	}
}

// BenchmarkHandshakeServerProcess is BenchmarkHandshake with the server in
// a child process: server-cpu-us/hs and server-allocs/hs are the server
// process alone (its runtime and GC included), and server-hs/s/core =
// 1e6 / server-cpu-us/hs is how many such handshakes one core of the
// gateway serves. "inflight1" runs one handshake at a time (the server
// idles between messages, so its runtime's wake-ups count too);
// "inflight16" keeps 16 clients handshaking, which is the gateway's
// capacity under load. hs/s is the wall-clock rate, clients included.
func BenchmarkHandshakeServerProcess(b *testing.B) {
	for _, kind := range []string{"full", "resumed", "psk"} {
		for _, inflight := range []int{1, 16} {
			for _, srv := range benchServers {
				b.Run(fmt.Sprintf("%s/inflight%d/%s", kind, inflight, srv.name), func(b *testing.B) {
					benchServerProcess(b, kind, srv.name, inflight)
				})
			}
		}
	}
}

func benchServerProcess(b *testing.B, kind, impl string, inflight int) {
	p := startServerProcess(b, kind, impl)
	// Each client keeps its own session, as devices do.
	clients := make([][]dtls.ClientOption, inflight)
	for i := range clients {
		clients[i] = benchClientOptions(kind)
		if err := benchDial(p.addr, clients[i]); err != nil { // primes "resumed"
			b.Fatal(err)
		}
		if err := p.served(); err != nil {
			b.Fatal(err)
		}
	}
	u0, err := p.usage()
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	t0 := time.Now()
	// Served confirmations arrive in any order; count them all.
	servedAll := make(chan error, 1)
	go func() {
		for n := 0; n < b.N; n++ {
			if err := p.served(); err != nil {
				servedAll <- err
				return
			}
		}
		servedAll <- nil
	}()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, inflight)
	for _, copts := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := benchDial(p.addr, copts); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	select {
	case err := <-servedAll:
		if err != nil {
			b.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		b.Fatal("server did not confirm every handshake")
	}
	el := time.Since(t0)
	b.StopTimer()
	u1, err := p.usage()
	if err != nil {
		b.Fatal(err)
	}
	n := float64(b.N)
	cpuUS := float64((u1.cpu - u0.cpu).Microseconds()) / n
	b.ReportMetric(n/el.Seconds(), "hs/s")
	b.ReportMetric(cpuUS, "server-cpu-us/hs")
	b.ReportMetric(1e6/cpuUS, "server-hs/s/core")
	b.ReportMetric(float64(u1.mallocs-u0.mallocs)/n, "server-allocs/hs")
	b.ReportMetric(float64(u1.bytes-u0.bytes)/n, "server-B/hs")
}
