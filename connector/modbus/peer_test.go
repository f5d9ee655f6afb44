package modbus

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
	mb "github.com/simonvetter/modbus"
)

// latest keeps the last frame per device|topic.
func latest(fs []gateway.Frame) map[string]gateway.Frame {
	m := map[string]gateway.Frame{}
	for _, f := range fs {
		m[f.Device+"|"+f.Topic] = f
	}
	return m
}

// waitLatest waits until pred holds for the latest frame per block.
func waitLatest(t *testing.T, col *conntest.Collector, what string, pred func(map[string]gateway.Frame) bool) map[string]gateway.Frame {
	t.Helper()
	fs := col.WaitFor(t, 10*time.Second, what, func(fs []gateway.Frame) bool { return pred(latest(fs)) })
	return latest(fs)
}

func quietLogger() *slog.Logger { return conntest.QuietLogger() }

// startPymodbus runs testdata/pymodbus_server.py on a free loopback port.
func startPymodbus(t testing.TB) string { return startPymodbusSized(t, 300) }

// startPymodbusSized serves an image of size addresses per table.
func startPymodbusSized(t testing.TB, size int) string { return startPymodbusFlaky(t, size, 0) }

// startPymodbusFlaky serves an image of size addresses per table and, with
// closeEvery > 0, closes the connection instead of answering every
// closeEvery-th request.
func startPymodbusFlaky(t testing.TB, size, closeEvery int) string {
	t.Helper()
	py := testenv.RequireCommand(t, "python3")
	if _, err := exec.LookPath("/usr/bin/python3"); err == nil {
		py = "/usr/bin/python3" // Debian's python3-pymodbus lives there
	}
	if err := exec.Command(py, "-c", "import pymodbus.server").Run(); err != nil {
		testenv.Skip(t, "needs python3-pymodbus (Debian python3-pymodbus, python3-serial-asyncio)")
	}
	port := testenv.FreePort(t)
	cmd := exec.Command(py, "testdata/pymodbus_server.py", strconv.Itoa(port), strconv.Itoa(size), strconv.Itoa(closeEvery))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start pymodbus: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conntest.WaitTCP(t, addr)
	return addr
}

func be16(v ...uint16) []byte {
	out := make([]byte, 0, 2*len(v))
	for _, x := range v {
		out = append(out, byte(x>>8), byte(x))
	}
	return out
}

func connect(t testing.TB, c *Connector, up gateway.Uplink) {
	t.Helper()
	if err := c.Connect(context.Background(), up); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Disconnect(ctx); err != nil {
			t.Errorf("disconnect: %v", err)
		}
	})
}

func TestPymodbusPollAllTables(t *testing.T) {
	addr := startPymodbus(t)
	c, err := New(WithLogger(quietLogger()), WithDevice(Device{Name: "plc", Address: addr, Interval: 100 * time.Millisecond,
		Ranges: []Range{
			{HoldingRegisters, 0, 4}, {HoldingRegisters, 10, 2}, // coalesced into hr/0+12
			{InputRegisters, 100, 3},
			{Coils, 0, 7},
			{DiscreteInputs, 5, 4},
		}}))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	got := waitLatest(t, col, "one frame per block", func(m map[string]gateway.Frame) bool { return len(m) == 4 })
	want := map[string][]byte{
		"plc|hr/0":   be16(1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1010, 1011),
		"plc|ir/100": be16(2100, 2101, 2102),
		"plc|coil/0": {0b1001001}, // coils 0, 3 and 6 of 0..6
		"plc|di/5":   {0b0101},    // inputs 5 and 7 of 5..8
	}
	for k, w := range want {
		f, ok := got[k]
		if !ok {
			t.Fatalf("no frame %s; got %v", k, keys(got))
		}
		if string(f.Payload) != string(w) {
			t.Errorf("%s payload = %v, want %v", k, f.Payload, w)
		}
	}
	// A frame is counted once Deliver returned, a moment after the
	// collector saw it.
	conntest.Eventually(t, 5*time.Second, "stats counting frames, bytes and requests", func() bool {
		st := c.Stats()
		return st.Total.Frames >= 4 && st.Devices["plc"].Bytes > 0 && st.Total.Requests >= 4
	})
}

func keys(m map[string]gateway.Frame) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestPymodbusExceptionAndWrite(t *testing.T) {
	addr := startPymodbus(t)
	c, err := New(WithLogger(quietLogger()), WithDevice(Device{Name: "plc", Address: addr, Interval: 100 * time.Millisecond,
		Ranges: []Range{{HoldingRegisters, 295, 10}, {InputRegisters, 0, 1}}}))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	// The out-of-image block fails with an exception every cycle; the
	// other block keeps flowing.
	waitLatest(t, col, "ir/0 frames", func(m map[string]gateway.Frame) bool { _, ok := m["plc|ir/0"]; return ok })
	for _, f := range col.Frames() {
		if f.Topic == "hr/295" {
			t.Fatal("a frame was delivered for a block the device refused")
		}
	}
	if c.Stats().Devices["plc"].Errors == 0 {
		t.Error("exception not counted")
	}
	ctx := context.Background()
	_, err = c.Read(ctx, "plc", Block{HoldingRegisters, 295, 10})
	if !errors.Is(err, ErrIllegalDataAddress) {
		t.Fatalf("read past the image: err = %v, want ErrIllegalDataAddress", err)
	}
	if want := "modbus plc: read hr/295+10: modbus: exception 2: illegal data address"; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
		t.Errorf("error text %q does not start with %q", err, want)
	}

	tests := []struct {
		topic   string
		payload []byte
		read    Block
		want    []byte
		wantErr error
	}{
		{"hr/10", be16(0xbeef), Block{HoldingRegisters, 10, 1}, be16(0xbeef), nil},
		{"hr/20", be16(1, 2, 3), Block{HoldingRegisters, 20, 3}, be16(1, 2, 3), nil},
		{"coil/1", []byte{0b1}, Block{Coils, 0, 3}, []byte{0b011}, nil},       // writes coils 1..8
		{"coil/10", []byte{0b110}, Block{Coils, 9, 4}, []byte{0b1101}, nil},   // writes coils 10..17
		{"coil/290", []byte{0xff, 0xff}, Block{}, nil, ErrIllegalDataAddress}, // 16 coils, past the image
		{"ir/0", be16(1), Block{}, nil, gateway.ErrNotSupported},
		{"hr/299", be16(1, 2), Block{}, nil, ErrIllegalDataAddress},
	}
	for _, tt := range tests {
		f := &gateway.Frame{Device: "plc", Topic: tt.topic, Payload: tt.payload}
		err := c.Write(ctx, f)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("write %s: err = %v, want %v", tt.topic, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("write %s: %v", tt.topic, err)
		}
		got, err := c.Read(ctx, "plc", tt.read)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(tt.want) {
			t.Errorf("after write %s: read %v = %v, want %v", tt.topic, tt.read, got, tt.want)
		}
	}
	if err := c.Write(ctx, &gateway.Frame{Device: "plc", Topic: "co/1", Payload: []byte{1}}); err == nil || !strings.Contains(err.Error(), `unknown table "co"`) {
		t.Errorf(`write to "co/1": err = %v, want unknown table`, err)
	}
	if err := c.Write(ctx, &gateway.Frame{Device: "nope", Topic: "hr/1", Payload: be16(1)}); !errors.Is(err, gateway.ErrNoRoute) {
		t.Errorf("write to unknown device: %v", err)
	}
}

// edgeServer is a simonvetter/modbus server whose behaviour a test can
// change: slow replies and exceptions.
type edgeServer struct {
	mu    sync.Mutex
	delay time.Duration
	fail  error
}

func (s *edgeServer) HandleCoils(*mb.CoilsRequest) ([]bool, error) { return nil, mb.ErrIllegalFunction }
func (s *edgeServer) HandleDiscreteInputs(*mb.DiscreteInputsRequest) ([]bool, error) {
	return nil, mb.ErrIllegalFunction
}
func (s *edgeServer) HandleInputRegisters(*mb.InputRegistersRequest) ([]uint16, error) {
	return nil, mb.ErrIllegalFunction
}
func (s *edgeServer) HandleHoldingRegisters(r *mb.HoldingRegistersRequest) ([]uint16, error) {
	s.mu.Lock()
	d, fail := s.delay, s.fail
	s.mu.Unlock()
	time.Sleep(d)
	if fail != nil {
		return nil, fail
	}
	out := make([]uint16, r.Quantity)
	for i := range out {
		out[i] = r.Addr + uint16(i)
	}
	return out, nil
}

func (s *edgeServer) set(delay time.Duration, fail error) {
	s.mu.Lock()
	s.delay, s.fail = delay, fail
	s.mu.Unlock()
}

func startEdgeServer(t *testing.T, addr string, h *edgeServer) *mb.ModbusServer {
	t.Helper()
	srv, err := mb.NewServer(&mb.ServerConfiguration{URL: "tcp://" + addr, Timeout: 30 * time.Second, MaxClients: 10, Logger: discardLogger()}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	return srv
}

func TestEdgeSlowRepliesDisconnectReconnect(t *testing.T) {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	h := &edgeServer{}
	srv := startEdgeServer(t, addr, h)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = srv.Stop()
		}
	})
	c, err := New(WithLogger(quietLogger()), WithTimeout(150*time.Millisecond), WithRetries(1),
		WithBackoff(20*time.Millisecond, 100*time.Millisecond, time.Second),
		WithDevice(Device{Name: "slow", Address: addr, Interval: 50 * time.Millisecond,
			Ranges: []Range{{HoldingRegisters, 7, 2}}}))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	waitLatest(t, col, "first frame", func(m map[string]gateway.Frame) bool {
		return string(m["slow|hr/7"].Payload) == string(be16(7, 8))
	})

	// Slow replies: requests time out, the connection is dropped and
	// re-opened; nothing is delivered meanwhile.
	h.set(400*time.Millisecond, nil)
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().Devices["slow"].Reconnects == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if c.Stats().Devices["slow"].Reconnects == 0 {
		t.Fatalf("no reconnect after timeouts: %+v", c.Stats().Devices["slow"])
	}
	// Exceptions: counted, no reconnect storm, no frames.
	h.set(0, mb.ErrServerDeviceBusy)
	time.Sleep(300 * time.Millisecond)
	n := col.Len()
	time.Sleep(200 * time.Millisecond)
	if col.Len() != n {
		t.Fatal("frames delivered while the device answered exceptions")
	}
	h.set(0, nil)
	waitLatest(t, col, "frames after recovery", func(map[string]gateway.Frame) bool { return col.Len() > n })

	// The server goes away and comes back on the same port.
	_ = srv.Stop()
	stopped = true
	before := c.Stats().Devices["slow"].Reconnects
	time.Sleep(300 * time.Millisecond)
	n = col.Len()
	srv2 := startEdgeServer(t, addr, h)
	t.Cleanup(func() { _ = srv2.Stop() })
	waitLatest(t, col, "frames after server restart", func(map[string]gateway.Frame) bool { return col.Len() > n })
	if c.Stats().Devices["slow"].Reconnects <= before {
		t.Error("restart not counted as a reconnect")
	}
}

// TestGarbagePeer: a peer that answers random bytes is counted as
// malformed and reconnected; another device keeps delivering.
func TestGarbagePeer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			// Answer each request with a different kind of garbage:
			// wrong protocol id, truncated frame, random bytes.
			buf := make([]byte, 260)
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for j := 0; j < 3; j++ {
				if _, err := conn.Read(buf); err != nil {
					break
				}
				var reply []byte
				switch (i + j) % 3 {
				case 0:
					reply = []byte{buf[0], buf[1], 0xde, 0xad, 0, 7, 1, 3, 4, 0, 1, 0, 2}
				case 1:
					reply = []byte{buf[0], buf[1], 0, 0, 0, 9, 1, 3}
				default:
					reply = make([]byte, 1+rng.IntN(40))
					for k := range reply {
						reply[k] = byte(rng.Uint32())
					}
				}
				_, _ = conn.Write(reply)
			}
			conn.Close()
		}
	}()
	good := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	srv := startEdgeServer(t, good, &edgeServer{})
	t.Cleanup(func() { _ = srv.Stop() })

	c, err := New(WithLogger(quietLogger()), WithTimeout(200*time.Millisecond),
		WithBackoff(10*time.Millisecond, 50*time.Millisecond, time.Second),
		WithDevice(Device{Name: "junk", Address: ln.Addr().String(), Interval: 20 * time.Millisecond, Ranges: []Range{{HoldingRegisters, 0, 2}}}),
		WithDevice(Device{Name: "good", Address: good, Interval: 20 * time.Millisecond, Ranges: []Range{{HoldingRegisters, 0, 2}}}))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	waitLatest(t, col, "good frames", func(m map[string]gateway.Frame) bool { _, ok := m["good|hr/0"]; return ok })
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().Devices["junk"].Malformed < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st := c.Stats().Devices["junk"]
	if st.Malformed < 2 || st.Frames != 0 {
		t.Fatalf("junk peer stats = %+v, want malformed replies counted and no frames", st)
	}
}

func TestCoalescingRequestsPerCycle(t *testing.T) {
	var ranges []Range
	for a := uint16(0); a < 250; a++ {
		ranges = append(ranges, Range{HoldingRegisters, a * 2, 1}) // every other register
	}
	on := Plan(ranges, true, 16)
	off := Plan(ranges, false, 16)
	if len(off) != 250 || len(on) != 4 {
		t.Fatalf("requests per cycle: coalesced %d, plain %d", len(on), len(off))
	}
}
