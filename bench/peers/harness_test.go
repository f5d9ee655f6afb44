package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/mqttwire"
	"github.com/iotgw/gateway/internal/testenv"
)

func testConfig(t *testing.T, n int, peers ...string) config {
	t.Helper()
	mosq := testenv.RequireCommand(t, "mosquitto")
	return config{n: n, devices: []int{4}, rounds: 1, window: 20, peers: peers,
		timeout: 2 * time.Minute, stall: 30 * time.Second, probeTimeout: time.Minute,
		mosquitto: mosq, tmpDir: t.TempDir(), cacheDir: t.TempDir(), nodeREDVersion: "4.1.15"}
}

// withPeers adds test-only peers for the duration of t.
func withPeers(t *testing.T, ps ...peer) {
	saved := allPeers
	allPeers = append(append([]peer(nil), allPeers...), ps...)
	t.Cleanup(func() { allPeers = saved })
}

// children lists the processes whose parent is this one.
func children(t *testing.T) []string {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	me := strconv.Itoa(os.Getpid())
	var kids []string
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(b[i+1:]))
		if len(fields) > 1 && fields[1] == me {
			kids = append(kids, string(b[:i+1]))
		}
	}
	return kids
}

func findResult(t *testing.T, res []result, name string) result {
	t.Helper()
	for _, r := range res {
		if r.peer.name == name {
			return r
		}
	}
	t.Fatalf("no result for %s in %d results", name, len(res))
	return result{}
}

// TestHarnessGatewayListener runs the harness at a tiny size: the ceiling
// and gatewayd's MQTT listener, which must deliver every id exactly once.
func TestHarnessGatewayListener(t *testing.T) {
	if testing.Short() {
		t.Skip("builds gatewayd and starts brokers")
	}
	cfg := testConfig(t, 2000, "ceiling", "gw-listener")
	if _, err := exec.LookPath("go"); err != nil {
		testenv.Skip(t, "needs the go command to build gatewayd")
	}
	dir, err := moduleDir()
	if err != nil {
		t.Fatal(err)
	}
	cfg.moduleDir = dir
	cfg.warmup = 200
	var log bytes.Buffer
	res, err := runHarness(context.Background(), cfg, &log)
	t.Logf("progress:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	printTable(&table, cfg, res, time.Now(), "", "")
	t.Logf("%s", table.String())
	if kids := children(t); len(kids) > 0 {
		t.Errorf("processes still running after the harness: %v", kids)
	}
	for _, name := range []string{"ceiling", "gw-listener"} {
		r := findResult(t, res, name)
		if r.err != nil {
			t.Fatalf("%s: %v", name, r.err)
		}
		if r.received != cfg.n || r.lost != 0 || r.dups != 0 || r.stray != 0 || r.note != "" {
			t.Errorf("%s: received %d lost %d dup %d without id %d (%s), want %d, 0, 0, 0", name, r.received, r.lost, r.dups, r.stray, r.note, cfg.n)
		}
		if r.rate <= 0 || r.bCPU < 0 {
			t.Errorf("%s: rate %v, broker B CPU %v: want both measured", name, r.rate, r.bCPU)
		}
	}
	gw := findResult(t, res, "gw-listener")
	if gw.fwdCPU < 0 || gw.fwdAll <= 0 || gw.rss <= 0 {
		t.Errorf("gw-listener: CPU %v µs/msg (whole run %v), peak RSS %d: want all measured", gw.fwdCPU, gw.fwdAll, gw.rss)
	}
	if !strings.Contains(table.String(), "| 4 | 1 | gatewayd, MQTT listener") {
		t.Errorf("table has no gw-listener row:\n%s", table.String())
	}
}

// TestHarnessFailingPeers: a peer that does not start, one through which
// nothing comes, and one that forwards only half the messages are each
// reported with what went wrong, and the other peers still run.
func TestHarnessFailingPeers(t *testing.T) {
	withPeers(t,
		peer{name: "broken", label: "broken", start: func(context.Context, *runEnv) (*proc, string, error) {
			return nil, "", errors.New("cannot start")
		}},
		peer{name: "blackhole", label: "blackhole", needsA: true, start: func(_ context.Context, r *runEnv) (*proc, string, error) {
			return nil, r.brokerA, nil // nothing forwards A to B
		}},
		peer{name: "half", label: "half", needsA: true, start: startHalf},
	)
	cfg := testConfig(t, 1000, "broken", "blackhole", "half", "ceiling")
	// Short enough to keep the test quick, long enough that a loaded
	// machine does not make the working peers look stalled.
	cfg.probeTimeout = 3 * time.Second
	cfg.stall = 3 * time.Second
	var log bytes.Buffer
	res, err := runHarness(context.Background(), cfg, &log)
	t.Logf("progress:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("processes still running after the harness: %v", kids)
	}
	if r := findResult(t, res, "broken"); r.err == nil || !strings.Contains(r.err.Error(), "cannot start") {
		t.Errorf("broken: err %v, want cannot start", r.err)
	}
	if r := findResult(t, res, "blackhole"); r.err == nil || !strings.Contains(r.err.Error(), "nothing came through") {
		t.Errorf("blackhole: err %v, want nothing came through", r.err)
	}
	h := findResult(t, res, "half")
	if h.err != nil || h.received != cfg.n/2 || h.lost != cfg.n/2 || !strings.Contains(h.note, "stalled") {
		t.Errorf("half: err %v received %d lost %d note %q, want %d received, %d lost, stalled", h.err, h.received, h.lost, h.note, cfg.n/2, cfg.n/2)
	}
	if c := findResult(t, res, "ceiling"); c.err != nil || c.received != cfg.n || c.lost != 0 || c.dups != 0 {
		t.Errorf("ceiling after failing peers: err %v received %d lost %d dup %d", c.err, c.received, c.lost, c.dups)
	}
}

// startHalf is an in-process forwarder from broker A to broker B that
// drops odd ids. Its goroutine ends when the brokers stop.
func startHalf(_ context.Context, r *runEnv) (*proc, string, error) {
	in, err := dialMQTT(r.brokerA, "half-in", 1<<16, 4096, 5*time.Second)
	if err != nil {
		return nil, "", err
	}
	if err := in.subscribe("devices/#", 5*time.Second); err != nil {
		in.close()
		return nil, "", err
	}
	out, err := dialMQTT(r.brokerB, "half-out", 4096, 1<<16, 5*time.Second)
	if err != nil {
		in.close()
		return nil, "", err
	}
	go func() {
		defer in.close()
		defer out.close()
		go func() { // drop broker B's PUBACKs
			for {
				if _, _, err := out.next(); err != nil {
					return
				}
			}
		}()
		var pid uint16
		for {
			if in.r.Buffered() == 0 && (in.w.Flush() != nil || out.w.Flush() != nil) {
				return
			}
			first, body, err := in.next()
			if err != nil {
				return
			}
			if first>>4 != pktPublish {
				continue
			}
			topic, id, payload, err := parsePublish(first, body)
			if err != nil {
				return
			}
			in.writePuback(id)
			if n, ok := parseID(payload); ok && n%2 == 1 {
				continue
			}
			pid = pid%65535 + 1
			out.writePublish(string(topic), pid, payload)
		}
	}()
	return nil, r.brokerA, nil
}

func TestParseID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		id   int
		want bool
	}{
		{`{"id":123,"dev":"d7","v":1.5}`, 123, true},
		{`{"id":"0190aa","device":"d7","topic":"env","connector":"devices","qos":1,"priority":4,"points":[{"name":"id","value":123},{"name":"dev","value":"d7"}]}`, 123, true},
		{`{"id":"0190aa","points":[{"name":"v","value":1.5},{"name":"id","value":1e+06}]}`, 1000000, true},
		{`{"id":"0190aa","points":[{"name":"id","value":12.5}]}`, 0, false},
		{`{"probe":1}`, 0, false},
		{`{"id":-4}`, 0, false},
	} {
		id, ok := parseID([]byte(tc.in))
		if ok != tc.want || (ok && id != tc.id) {
			t.Errorf("parseID(%s) = %d, %v; want %d, %v", tc.in, id, ok, tc.id, tc.want)
		}
	}
	if got, ok := parseID(appendPayload(nil, 4711, "d3")); !ok || got != 4711 {
		t.Errorf("parseID of a device payload = %d, %v", got, ok)
	}
}

func FuzzParseID(f *testing.F) {
	f.Add([]byte(`{"id":123,"dev":"d7","v":1.5}`))
	f.Add([]byte(`{"points":[{"name":"id","value":1.23e+05}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if id, ok := parseID(b); ok && id < 0 {
			t.Fatalf("negative id %d from %q", id, b)
		}
	})
}

// FuzzReadPacket feeds arbitrary bytes to the packet reader and the
// PUBLISH parser: they return errors, never panic, and what they return
// lies within the input.
func FuzzReadPacket(f *testing.F) {
	pub := mqttwire.AppendHeader(nil, pktPublish<<4|0x02, 2+3+2+2)
	pub = append(pub, 0, 3, 'a', '/', 'b', 0, 1, '{', '}')
	f.Add(pub)
	f.Add([]byte{pktPuback << 4, 2, 0, 1})
	f.Add([]byte{0x30, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		rc := &rawConn{r: bufio.NewReaderSize(bytes.NewReader(b), 64)}
		for i := 0; i < 8; i++ {
			first, body, err := rc.next()
			if err != nil {
				return
			}
			if len(body) > len(b) {
				t.Fatalf("body of %d bytes from %d bytes of input", len(body), len(b))
			}
			if first>>4 == pktPublish {
				topic, _, payload, err := parsePublish(first, body)
				if err == nil && len(topic)+len(payload) > len(body) {
					t.Fatalf("topic %d + payload %d bytes from a body of %d", len(topic), len(payload), len(body))
				}
			}
		}
	})
}

func TestParseStat(t *testing.T) {
	// A command name with spaces and parentheses; utime 250, stime 150.
	stat := "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 150 0 0 20 0 4 0 100 1000000 500 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 4*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 4s", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("short stat: no error")
	}
	rss, err := parseStatusKB([]byte("Name:\tgatewayd\nVmHWM:\t   28160 kB\nVmRSS:\t 1 kB\n"), "VmHWM:")
	if err != nil || rss != 28160<<10 {
		t.Errorf("VmHWM = %d, %v", rss, err)
	}
	if _, err := cpuTime(os.Getpid()); err != nil {
		t.Errorf("own CPU time: %v", err)
	}
}

func TestRoundTripPacket(t *testing.T) {
	var buf bytes.Buffer
	w := &rawConn{w: bufio.NewWriter(&buf)}
	payload := appendPayload(nil, 7, "d1")
	w.writePublish("devices/d1/env", 300, payload)
	w.writePuback(300)
	if err := w.w.Flush(); err != nil {
		t.Fatal(err)
	}
	r := &rawConn{r: bufio.NewReader(&buf)}
	first, body, err := r.next()
	if err != nil {
		t.Fatal(err)
	}
	topic, id, p, err := parsePublish(first, body)
	if err != nil || string(topic) != "devices/d1/env" || id != 300 || !bytes.Equal(p, payload) || first != pktPublish<<4|0x02 {
		t.Fatalf("publish: %#x %q %d %q %v", first, topic, id, p, err)
	}
	first, body, err = r.next()
	if err != nil || first != pktPuback<<4 || !bytes.Equal(body, []byte{1, 44}) {
		t.Fatalf("puback: %#x %v %v", first, body, err)
	}
}
