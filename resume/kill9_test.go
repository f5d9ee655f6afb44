package resume

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/testenv"
)

// TestGatewayChild is the gateway process the kill -9 test starts and
// kills: an edge-mode gateway with a SQLiteStore, a TCP line connector and
// a paho sink. It does nothing unless started by that test.
func TestGatewayChild(t *testing.T) {
	db := os.Getenv("RESUME_CHILD_DB")
	if db == "" {
		return // started only as a child process by TestKill9: not a test of its own
	}
	// Half the cycles run the resume Drainer inside the gateway (frames a
	// crash left go back through Drain's target), half the gateway's own
	// replay; both read the same file.
	var st gateway.Store
	var err error
	if os.Getenv("RESUME_CHILD_EDGE") != "" {
		var es *EdgeStore
		es, err = NewEdgeStore(EdgeConfig{Store: SQLiteConfig{Path: db, Logger: quietLogger(), MinFreeBytes: -1},
			Drain: DrainerConfig{Logger: quietLogger(), Backoff: Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}}})
		if err == nil {
			err = es.Open()
		}
		st = es
	} else {
		st, err = OpenSQLiteStore(SQLiteConfig{Path: db, Logger: quietLogger(), MinFreeBytes: -1})
	}
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(2)
	}
	sink := &pahoSink{broker: os.Getenv("RESUME_CHILD_BROKER"), clientID: "gw-child", topic: os.Getenv("RESUME_CHILD_TOPIC"), off: os.Getenv("RESUME_CHILD_OFF")}
	g, err := gateway.New(gateway.WithLogger(quietLogger()), gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st),
		gateway.WithSink("up", sink), gateway.WithConnector("dev", &lineConnector{ln: ln}), gateway.WithQoS(1))
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	fmt.Printf("READY %s\n", ln.Addr())
	_ = g.Run(ctx)
	_ = sink.Close()
	_ = st.(io.Closer).Close()
	os.Exit(0)
}

type child struct {
	cmd  *exec.Cmd
	addr string
}

func startChild(t *testing.T, db, broker, topic, off string, edge bool) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestGatewayChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "RESUME_CHILD_DB="+db, "RESUME_CHILD_BROKER="+broker,
		"RESUME_CHILD_TOPIC="+topic, "RESUME_CHILD_OFF="+off)
	if edge {
		cmd.Env = append(cmd.Env, "RESUME_CHILD_EDGE=1")
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- a
			}
		}
		close(ready)
	}()
	select {
	case a, ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			t.Fatal("child gateway exited before it was ready")
		}
		return &child{cmd: cmd, addr: a}
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatal("child gateway not ready within 20s")
	}
	return nil
}

func (c *child) kill9() {
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	_ = c.cmd.Wait()
}

func (c *child) terminate() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	_ = c.cmd.Wait()
}

// devices sends numbered messages over lineConnector connections and keeps
// the IDs the gateway acknowledged.
type devices struct {
	next  atomic.Uint64
	mu    sync.Mutex
	acked map[gateway.MessageID]bool
	sent  map[gateway.MessageID]bool
}

func newDevices() *devices {
	return &devices{acked: map[gateway.MessageID]bool{}, sent: map[gateway.MessageID]bool{}}
}

// run sends on conns connections until stop closes, limit messages were
// acknowledged (limit > 0), or the gateway goes away.
func (d *devices) run(addr string, conns int, limit int64, stop <-chan struct{}) {
	var wg sync.WaitGroup
	var done atomic.Int64
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return
			}
			defer c.Close()
			go func() { <-stop; c.Close() }()
			r := bufio.NewReader(c)
			for limit <= 0 || done.Load() < limit {
				id := idOf(d.next.Add(1))
				d.mu.Lock()
				d.sent[id] = true
				d.mu.Unlock()
				if _, err := fmt.Fprintf(c, "%s reading-%d\n", id, rand.IntN(1000)); err != nil {
					return
				}
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if strings.HasPrefix(line, "ok ") {
					d.mu.Lock()
					d.acked[id] = true
					d.mu.Unlock()
					done.Add(1)
				}
			}
		}()
	}
	wg.Wait()
}

// TestKill9 kills the gateway process with SIGKILL at random points, half
// the cycles while devices send (ingest), half while a backlog drains.
// Every message the gateway acknowledged to a device must reach the
// consumer; after de-duplication by MessageID nothing else may arrive.
func TestKill9(t *testing.T) {
	mq := startMosquitto(t)
	topic := "resume/kill9"
	cons := newConsumer(t, mq.addr, topic)
	dir := t.TempDir()
	db, off := filepath.Join(dir, "queue.db"), filepath.Join(dir, "sink.off")
	cycles := 50
	if v, err := strconv.Atoi(os.Getenv("RESUME_KILL9_CYCLES")); err == nil && v > 0 {
		cycles = v
	} else if testing.Short() && !testenv.InCI() {
		cycles = 10
	}
	devs := newDevices()
	for i := 0; i < cycles; i++ {
		drainCycle := i%2 == 1
		if drainCycle {
			if err := os.WriteFile(off, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		c := startChild(t, db, mq.addr, topic, off, i%4 >= 2)
		stop := make(chan struct{})
		if drainCycle {
			// Build a backlog the sink cannot take, then let it drain and
			// kill the gateway in the middle.
			devs.run(c.addr, 8, 400, stop)
			if err := os.Remove(off); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Duration(rand.IntN(250)) * time.Millisecond)
			c.kill9()
		} else {
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); devs.run(c.addr, 8, 0, stop) }()
			time.Sleep(time.Duration(30+rand.IntN(300)) * time.Millisecond)
			c.kill9()
			close(stop)
			wg.Wait()
		}
	}
	_ = os.Remove(off)
	c := startChild(t, db, mq.addr, topic, off, true)
	defer c.terminate()
	devs.mu.Lock()
	acked := make([]gateway.MessageID, 0, len(devs.acked))
	for id := range devs.acked {
		acked = append(acked, id)
	}
	devs.mu.Unlock()
	if len(acked) < cycles*50 {
		t.Fatalf("only %d messages acknowledged over %d cycles: the test did not exercise ingest", len(acked), cycles)
	}
	deadline := time.Now().Add(90 * time.Second)
	missing := acked
	for len(missing) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		var still []gateway.MessageID
		for _, id := range missing {
			if !cons.has(id) {
				still = append(still, id)
			}
		}
		missing = still
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged messages never reached the consumer (first %s)", len(missing), len(acked), missing[0])
	}
	distinct, total := cons.snapshot()
	cons.mu.Lock()
	extras := 0
	for id := range cons.received {
		if !devs.sent[id] {
			extras++
		}
	}
	cons.mu.Unlock()
	if extras > 0 {
		t.Fatalf("%d message IDs reached the consumer that no device sent", extras)
	}
	if uint64(total-distinct) != cons.dedup.Duplicates() {
		t.Fatalf("deduper dropped %d repeats, consumer saw %d", cons.dedup.Duplicates(), total-distinct)
	}
	t.Logf("%d cycles: %d sent, %d acknowledged, %d distinct received (%d unacknowledged in flight also arrived), %d duplicates dropped by id",
		cycles, len(devs.sent), len(acked), distinct, distinct-len(acked), total-distinct)
}
