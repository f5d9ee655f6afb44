package resume

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/testenv"
)

// TestNetnsChild is the gateway side of TestVethCut, started inside the
// test's network namespace. It runs the resume stack, produces records at
// a steady pace, and prints every state transition with its time.
func TestNetnsChild(t *testing.T) {
	broker := os.Getenv("RESUME_NETNS_BROKER")
	if broker == "" {
		return // started only as a child process by TestVethCut: not a test of its own
	}
	host, _, _ := net.SplitHostPort(broker)
	// The whole gateway in edge mode, with the EdgeStore in charge of the
	// drain and the live path, as a deployment would run it.
	sink := &pahoSink{broker: broker, clientID: "netns-gw", topic: os.Getenv("RESUME_NETNS_TOPIC")}
	st, err := NewEdgeStore(EdgeConfig{
		Store: SQLiteConfig{Path: os.Getenv("RESUME_NETNS_DB"), Logger: quietLogger(), MinFreeBytes: -1},
		Drain: DrainerConfig{Batch: 256, InFlight: 4, Logger: quietLogger(),
			Backoff: Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}},
		Monitor: MonitorConfig{Interval: 200 * time.Millisecond, Probes: []Probe{
			&ICMPProbe{Host: host},
			&HTTPHeadProbe{URL: os.Getenv("RESUME_NETNS_HTTP")},
			&HeartbeatProbe{Addr: os.Getenv("RESUME_NETNS_HEARTBEAT")},
		}},
	})
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(2)
	}
	var out sync.Mutex
	for s := State(0); s < numStates; s++ {
		st.Machine().OnEnter(s, func(from, to State, ev Event) {
			out.Lock()
			fmt.Printf("STATE %s %d\n", to, time.Now().UnixNano())
			out.Unlock()
		})
	}
	g, err := gateway.New(gateway.WithLogger(quietLogger()), gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st),
		gateway.WithSink("up", sink), gateway.WithQoS(1), gateway.WithShutdownTimeout(30*time.Second))
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	runCtx, stopRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(runCtx) }()
	out.Lock()
	fmt.Println("READY")
	out.Unlock()
	var produced uint64
	tk := time.NewTicker(10 * time.Millisecond)
	for ctx.Err() == nil {
		select {
		case <-tk.C:
			for i := 0; i < 10; i++ {
				produced++
				f := gateway.AcquireFrame()
				f.Device, f.Topic, f.ID = "dev", "t", idOf(produced)
				f.Payload = append(f.Payload, 'x')
				if err := g.Inject(ctx, f); err != nil {
					produced--
					break
				}
			}
		case <-ctx.Done():
		}
	}
	tk.Stop()
	// Devices stopped: let the backlog drain before leaving.
	for deadline := time.Now().Add(20 * time.Second); st.Stats().Rows > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	stopRun()
	<-done
	ds := st.Drainer().Stats()
	_ = sink.Close()
	_ = st.Close()
	out.Lock()
	fmt.Printf("DRAINED %d %d\n", ds.Acked, ds.Refused)
	fmt.Printf("PRODUCED %d\n", produced)
	out.Unlock()
	os.Exit(0)
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

type stateAt struct {
	s  string
	at time.Time
}

// TestVethCut puts the gateway side in a network namespace and cuts its
// uplink by taking the veth down and up again, 20 times. Each cut must
// walk Online -> Offline -> Recovering -> Draining -> Online with nothing
// lost; the time from link-up to Draining is reported (target <= 1s with
// 200ms heartbeats).
func TestVethCut(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip", "mosquitto")
	tag := fmt.Sprintf("%05d", rand.IntN(100000))
	ns, outer, inner := "rsm"+tag, "vro"+tag, "vri"+tag
	octet := 1 + rand.IntN(250)
	cloud, gw := fmt.Sprintf("10.231.%d.1", octet), fmt.Sprintf("10.231.%d.2", octet)
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", outer).Run() })
	run(t, "ip", "link", "set", inner, "netns", ns)
	run(t, "ip", "addr", "add", cloud+"/30", "dev", outer)
	run(t, "ip", "link", "set", outer, "up")
	run(t, "ip", "netns", "exec", ns, "ip", "addr", "add", gw+"/30", "dev", inner)
	run(t, "ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
	run(t, "ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")

	mq := startMosquittoOn(t, cloud)
	topic := "resume/veth"
	cons := newConsumer(t, mq.addr, topic)
	hb, err := ListenHeartbeat(net.JoinHostPort(cloud, "0"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hb.Close() })
	ln, err := net.Listen("tcp", net.JoinHostPort(cloud, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), ReadHeaderTimeout: time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestNetnsChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "RESUME_NETNS_BROKER="+mq.addr, "RESUME_NETNS_TOPIC="+topic,
		"RESUME_NETNS_DB="+filepath.Join(t.TempDir(), "q.db"), "RESUME_NETNS_HTTP=http://"+ln.Addr().String()+"/",
		"RESUME_NETNS_HEARTBEAT="+hb.Addr().String())
	cmd.Stderr = os.Stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	states := make(chan stateAt, 1024)
	produced := make(chan uint64, 1)
	drained := make(chan [2]string, 1)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			switch {
			case len(f) == 1 && f[0] == "READY":
				close(ready)
			case len(f) == 3 && f[0] == "STATE":
				ns, _ := strconv.ParseInt(f[2], 10, 64)
				states <- stateAt{f[1], time.Unix(0, ns)}
			case len(f) == 3 && f[0] == "DRAINED":
				drained <- [2]string{f[1], f[2]}
			case len(f) == 2 && f[0] == "PRODUCED":
				n, _ := strconv.ParseUint(f[1], 10, 64)
				produced <- n
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		t.Fatal("child not ready")
	}
	waitFor := func(want string, within time.Duration) stateAt {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case s := <-states:
				if s.s == want {
					return s
				}
			case <-deadline:
				t.Fatalf("state %s not reached within %v", want, within)
			}
		}
	}
	time.Sleep(500 * time.Millisecond)
	cuts := 20
	var lat []time.Duration
	testStart := time.Now()
	for i := 0; i < cuts; i++ {
		down := time.Now()
		run(t, "ip", "netns", "exec", ns, "ip", "link", "set", inner, "down")
		waitFor("offline", 5*time.Second)
		time.Sleep(time.Duration(200+rand.IntN(400)) * time.Millisecond)
		run(t, "ip", "netns", "exec", ns, "ip", "link", "set", inner, "up")
		up := time.Now()
		waitFor("recovering", 5*time.Second)
		dr := waitFor("draining", 5*time.Second)
		on := waitFor("online", 10*time.Second)
		t.Logf("cut %d: down->up %v, up->draining %v, draining->online %v", i, up.Sub(down).Round(time.Millisecond),
			dr.at.Sub(up).Round(time.Millisecond), on.at.Sub(dr.at).Round(time.Millisecond))
		lat = append(lat, dr.at.Sub(up))
	}
	t.Logf("cuts took %v", time.Since(testStart).Round(time.Millisecond))
	_ = cmd.Process.Signal(syscall.SIGTERM)
	var n uint64
	select {
	case n = <-produced:
	case <-time.After(20 * time.Second):
		t.Fatal("child did not report what it produced")
	}
	deadline := time.Now().Add(30 * time.Second)
	var missing []uint64
	for {
		missing = missing[:0]
		for i := uint64(1); i <= n; i++ {
			if !cons.has(idOf(i)) {
				missing = append(missing, i)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d messages lost (first %d)", len(missing), n, missing[0])
	}
	// The backlog went out through the resume Drainer inside the gateway,
	// and live traffic was refused (spilled) while Offline.
	select {
	case d := <-drained:
		t.Logf("drainer acked %s records; %s live messages refused while offline", d[0], d[1])
		if d[0] == "0" {
			t.Fatal("the resume drainer replayed nothing: the gateway did not use it")
		}
	default:
		t.Fatal("child did not report its drainer")
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("%d cuts, %d messages, all delivered; link-up to Draining: min %v p50 %v p90 %v max %v",
		cuts, n, lat[0].Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond),
		lat[len(lat)*9/10].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
}
