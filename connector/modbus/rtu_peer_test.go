package modbus

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

// requirePymodbus returns Debian's python3 with pymodbus and pyserial.
func requirePymodbus(t testing.TB) string {
	t.Helper()
	py := testenv.RequireCommand(t, "python3")
	if _, err := exec.LookPath("/usr/bin/python3"); err == nil {
		py = "/usr/bin/python3"
	}
	if err := exec.Command(py, "-c", "import pymodbus.server, serial_asyncio").Run(); err != nil {
		testenv.Skip(t, "needs python3-pymodbus, python3-serial and python3-serial-asyncio")
	}
	return py
}

// startRTUSerialPeer joins two ptys with socat and runs the pymodbus RTU
// server (8N1, the given units) on one end. It returns the other end's
// path, which the connector opens.
func startRTUSerialPeer(t testing.TB, units string) string {
	t.Helper()
	ours, theirs := ptyPair(t)
	startSerialServer(t, theirs, units)
	waitRTU(t, ours, units)
	return ours
}

// ptyPair joins two ptys with socat and returns their paths. Both ends
// are held open for the test: socat ends when a pty end is closed, and
// the connector may close and re-open its end.
func ptyPair(t testing.TB) (string, string) {
	t.Helper()
	socat := testenv.RequireCommand(t, "socat")
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	sc := exec.Command(socat, "pty,raw,echo=0,link="+a, "pty,raw,echo=0,link="+b)
	if err := sc.Start(); err != nil {
		t.Fatalf("socat: %v", err)
	}
	t.Cleanup(func() { _ = sc.Process.Kill(); _ = sc.Wait() })
	conntest.Eventually(t, 5*time.Second, "socat ptys", func() bool {
		_, e1 := os.Stat(a)
		_, e2 := os.Stat(b)
		return e1 == nil && e2 == nil
	})
	for _, p := range []string{a, b} {
		hold, err := os.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hold.Close() })
	}
	return a, b
}

// startSerialServer runs the pymodbus RTU server (8N1, 115200, the given
// units) on a pty end.
func startSerialServer(t testing.TB, dev, units string) {
	t.Helper()
	py := requirePymodbus(t)
	srv := exec.Command(py, "testdata/pymodbus_rtu_server.py", "serial", dev, "115200", units)
	if err := srv.Start(); err != nil {
		t.Fatalf("pymodbus: %v", err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
}

// waitRTU waits until the first of units answers on line.
func waitRTU(t testing.TB, line, units string) {
	t.Helper()
	u, _ := strconv.Atoi(strings.Split(units, ",")[0])
	bus := newRTUBus(RTU, line, Serial{Baud: 115200, Parity: ParityNone}, 200*time.Millisecond)
	defer bus.shutdown()
	conntest.Eventually(t, 10*time.Second, "pymodbus RTU server answering", func() bool {
		_, err := (&rtuClient{bus: bus, unit: uint8(u)}).readRegisters(HoldingRegisters, 0, 1)
		return err == nil
	})
}

var pty8N1 = Serial{Baud: 115200, Parity: ParityNone}

// TestRTUSerialUnitsOneSilent: three units on one pty line, unit 9 never
// answers. It times out (counted, no frames) while units 1 and 2 keep
// being polled with their own images; a write reaches its unit only.
func TestRTUSerialUnitsOneSilent(t *testing.T) {
	line := startRTUSerialPeer(t, "1,2")
	dev := func(name string, unit uint8) Device {
		return Device{Name: name, Transport: RTU, Address: line, Serial: pty8N1, UnitID: unit,
			Interval: 50 * time.Millisecond, Ranges: []Range{{HoldingRegisters, 0, 2}, {HoldingRegisters, 4, 1}, {Coils, 0, 5}}}
	}
	c, err := New(WithLogger(quietLogger()), WithTimeout(150*time.Millisecond), WithRetries(0),
		WithBackoff(50*time.Millisecond, 300*time.Millisecond, time.Second),
		WithDevice(dev("u1", 1)), WithDevice(dev("u2", 2)), WithDevice(dev("silent", 9)))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	conntest.Eventually(t, 10*time.Second, "unit 9 timing out", func() bool { return c.Stats().Devices["silent"].Errors >= 3 })
	// After the silent unit's timeouts, the others keep flowing.
	n1, n2 := c.Stats().Devices["u1"].Frames, c.Stats().Devices["u2"].Frames
	conntest.Eventually(t, 10*time.Second, "units 1 and 2 polled while 9 times out", func() bool {
		st := c.Stats()
		return st.Devices["u1"].Frames >= n1+10 && st.Devices["u2"].Frames >= n2+10
	})
	got := latest(col.Frames())
	want := map[string][]byte{
		"u1|hr/0":   be16(1000, 1001, 1002, 1003, 1004),
		"u2|hr/0":   be16(2000, 2001, 2002, 2003, 2004),
		"u1|coil/0": {0b01001},
		"u2|coil/0": {0b01001},
	}
	for k, w := range want {
		if string(got[k].Payload) != string(w) {
			t.Errorf("%s = % x, want % x", k, got[k].Payload, w)
		}
	}
	if st := c.Stats().Devices["silent"]; st.Frames != 0 {
		t.Errorf("silent unit delivered frames: %+v", st)
	}
	for k := range got {
		if strings.HasPrefix(k, "silent|") {
			t.Errorf("frame from the silent unit: %s", k)
		}
	}
	ctx := context.Background()
	if err := c.Write(ctx, &gateway.Frame{Device: "u2", Topic: "hr/3", Payload: be16(0xbeef, 0xcafe)}); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, &gateway.Frame{Device: "u2", Topic: "coil/1", Payload: []byte{0x01}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Write(ctx, &gateway.Frame{Device: "u1", Topic: "hr/7", Payload: be16(7)}); err != nil {
		t.Fatal(err)
	}
	if b, err := c.Read(ctx, "u2", Block{HoldingRegisters, 3, 2}); err != nil || string(b) != string(be16(0xbeef, 0xcafe)) {
		t.Errorf("u2 hr/3+2 after write = % x, %v", b, err)
	}
	if b, err := c.Read(ctx, "u1", Block{HoldingRegisters, 3, 1}); err != nil || string(b) != string(be16(1003)) {
		t.Errorf("u1 hr/3 after a write to u2 = % x, %v (the write reached the wrong unit)", b, err)
	}
	if _, err := c.Read(ctx, "u1", Block{HoldingRegisters, 299, 3}); !errors.Is(err, ErrIllegalDataAddress) {
		t.Errorf("read past the image: %v, want ErrIllegalDataAddress", err)
	}
}

// crcRelay forwards TCP both ways and flips a bit in every every-th reply
// (server to client chunk), so the client sees CRC errors.
type crcRelay struct {
	ln        net.Listener
	to        string
	every     int64
	n, broken atomic.Int64
	wg        sync.WaitGroup
}

func startCRCRelay(t *testing.T, to string, every int64) *crcRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &crcRelay{ln: ln, to: to, every: every}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		r.wg.Wait()
	})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			r.wg.Add(2)
			go func() { defer r.wg.Done(); _, _ = io.Copy(out, in); out.Close() }()
			go func() {
				defer r.wg.Done()
				defer in.Close()
				buf := make([]byte, 512)
				for {
					n, err := out.Read(buf)
					if n > 0 {
						if r.n.Add(1)%r.every == 0 {
							buf[n/2] ^= 0x04
							r.broken.Add(1)
						}
						if _, werr := in.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return r
}

// TestRTUOverTCPCRCErrors: RTU frames over TCP through a relay that
// corrupts every third reply. Corrupted replies are counted as malformed
// and never delivered; the good ones keep flowing for both units.
func TestRTUOverTCPCRCErrors(t *testing.T) {
	py := requirePymodbus(t)
	port := testenv.FreePort(t)
	srv := exec.Command(py, "testdata/pymodbus_rtu_server.py", "tcp", strconv.Itoa(port), "3,4")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conntest.WaitTCP(t, addr)
	relay := startCRCRelay(t, addr, 3)
	dev := func(name string, unit uint8) Device {
		return Device{Name: name, Transport: RTUOverTCP, Address: relay.ln.Addr().String(), UnitID: unit,
			Interval: 20 * time.Millisecond, Ranges: []Range{{InputRegisters, 10, 3}}}
	}
	c, err := New(WithLogger(quietLogger()), WithTimeout(300*time.Millisecond), WithRetries(0),
		WithBackoff(10*time.Millisecond, 50*time.Millisecond, time.Second),
		WithDevice(dev("u3", 3)), WithDevice(dev("u4", 4)))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	conntest.Eventually(t, 10*time.Second, "CRC errors counted and frames flowing", func() bool {
		st := c.Stats()
		return st.Total.Malformed >= 4 && st.Devices["u3"].Frames >= 5 && st.Devices["u4"].Frames >= 5
	})
	for _, f := range col.Frames() {
		want := map[string][]byte{"u3": be16(2310, 2311, 2312), "u4": be16(2410, 2411, 2412)}[f.Device]
		if string(f.Payload) != string(want) {
			t.Fatalf("%s %s: delivered % x, want % x (a corrupted reply got through)", f.Device, f.Topic, f.Payload, want)
		}
	}
	_, err = c.Read(context.Background(), "u3", Block{InputRegisters, 10, 3})
	for i := 0; i < 5 && err == nil; i++ {
		_, err = c.Read(context.Background(), "u3", Block{InputRegisters, 10, 3})
	}
	if !errors.Is(err, ErrCRC) || !errors.Is(err, ErrMalformedResponse) {
		t.Errorf("reads through the relay: err = %v, want ErrCRC (and ErrMalformedResponse)", err)
	}
}

// BenchmarkRTUPtyPolls polls 10 holding registers of one unit over a
// 115200-baud pty line (pymodbus on the far end) and reports polls/s and
// their ratio to the limit the frame times allow: request (8 bytes) and
// reply (25 bytes) at 10 bits per character, each followed by t3.5. A pty
// does not pace bytes at the baud rate, so the ratio shows how close the
// connector and the peer come to what a real line would allow.
func BenchmarkRTUPtyPolls(b *testing.B) {
	line := startRTUSerialPeer(b, "1")
	bus := newRTUBus(RTU, line, pty8N1, time.Second)
	defer bus.shutdown()
	c := &rtuClient{bus: bus, unit: 1}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := c.readRegisters(HoldingRegisters, 0, 10); err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(start)
	s := pty8N1.withDefaults()
	frame := time.Duration(8+25)*s.charTime() + 2*s.silence()
	polls := float64(b.N) / el.Seconds()
	limit := float64(time.Second) / float64(frame)
	b.ReportMetric(polls, "polls/s")
	b.ReportMetric(limit, "limit-polls/s")
	b.ReportMetric(polls/limit, "ratio")
}

// TestRTUSerialCRCRelay: a relay between two pty pairs passes the
// pymodbus server's replies to the connector and corrupts every third
// one. The corrupted replies are counted (ErrCRC, Malformed) and never
// delivered; the line recovers for the next request.
func TestRTUSerialCRCRelay(t *testing.T) {
	gw, relayIn := ptyPair(t)
	relayOut, dev := ptyPair(t)
	startSerialServer(t, dev, "5")
	in, err := openSerial(relayIn, pty8N1.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	out, err := openSerial(relayOut, pty8N1.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { in.Close(); out.Close(); wg.Wait() })
	var replies atomic.Int64
	wg.Add(2)
	go func() { // requests pass as they are
		defer wg.Done()
		_, _ = io.Copy(out, in)
	}()
	go func() { // every third reply gets a flipped bit
		defer wg.Done()
		buf := make([]byte, 256)
		for {
			n, err := out.Read(buf)
			if err != nil {
				return
			}
			if replies.Add(1)%3 == 0 {
				buf[n-1] ^= 0x01
			}
			if _, err := in.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	waitRTU(t, gw, "5")
	c, err := New(WithLogger(quietLogger()), WithTimeout(300*time.Millisecond), WithRetries(0),
		WithBackoff(10*time.Millisecond, 50*time.Millisecond, time.Second),
		WithDevice(Device{Name: "u5", Transport: RTU, Address: gw, Serial: pty8N1, UnitID: 5,
			Interval: 20 * time.Millisecond, Ranges: []Range{{HoldingRegisters, 2, 2}}}))
	if err != nil {
		t.Fatal(err)
	}
	col := conntest.NewCollector()
	connect(t, c, col)
	conntest.Eventually(t, 10*time.Second, "CRC errors counted and frames flowing", func() bool {
		st := c.Stats().Devices["u5"]
		return st.Malformed >= 3 && st.Frames >= 5
	})
	for _, f := range col.Frames() {
		if string(f.Payload) != string(be16(5002, 5003)) {
			t.Fatalf("delivered % x, want % x (a corrupted reply got through)", f.Payload, be16(5002, 5003))
		}
	}
}
