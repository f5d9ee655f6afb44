//go:build linux

package mqtt

import (
	"bufio"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/tcpkeepalive"
)

// BenchmarkIdleSessionFloor measures what an idle device connection costs
// the gateway process with no MQTT broker at all, for session loops of
// different shapes, to show where the floor of BenchmarkMQTTListenerSessions
// is. MQTT_SESSIONS (default 10000) TCP connections come from the
// load-generator process; the gateway side runs per connection:
//
//   - one: one goroutine blocked reading through a 1 KiB bufio.Reader.
//   - pair: that reader plus a writer goroutine blocked in a select on an
//     outbound channel and a done channel, the shape of mochi-mqtt's
//     session (a read loop and a write loop).
//   - pair-mochi-frames: the pair with the stack frames mochi-mqtt v2.7.9
//     keeps while a session is idle (attachClient 2,944 B and Client.Read
//     1,640 B of locals under the read, WriteLoop 1,784 B; sizes from
//     go build -gcflags=-S), and one excursion as deep as reading the
//     CONNECT packet (readConnectionPacket and ReadPacket, 4,328 B more).
//
// It reports RSS, goroutine stack and heap bytes per connection.
//
//	go test -run '^$' -bench BenchmarkIdleSessionFloor -benchtime 1x ./connector/mqtt
func BenchmarkIdleSessionFloor(b *testing.B) {
	sessions := 10000
	if v, err := strconv.Atoi(os.Getenv("MQTT_SESSIONS")); err == nil && v > 0 {
		sessions = v
	}
	for _, shape := range []string{"one", "pair", "pair-mochi-frames"} {
		b.Run(shape, func(b *testing.B) { idleFloor(b, shape, sessions) })
	}
}

func idleFloor(b *testing.B, shape string, sessions int) {
	lc := net.ListenConfig{KeepAliveConfig: tcpkeepalive.Config()}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	var parked sync.WaitGroup
	parked.Add(sessions)
	base := settledRSS(b)
	baseRM := readRuntimeMetrics()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				br := bufio.NewReaderSize(c, 1024)
				out := make(chan []byte, 32)
				if shape != "one" {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if shape == "pair-mochi-frames" {
							writeLoopFrames(out, done, c)
						} else {
							writeLoop(out, done, c)
						}
					}()
				}
				if shape == "pair-mochi-frames" {
					readLoopFrames(br, &parked)
				} else {
					parked.Done()
					readLoop(br)
				}
			}()
		}
	}()
	cleanup := func() {
		close(done)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
	defer cleanup()

	gen := exec.Command(os.Args[0], "-test.run", "^TestMQTTLoadGenerator$", "-test.timeout", "10m")
	gen.Env = append(os.Environ(), "MQTT_LOADGEN_ADDR="+ln.Addr().String(), "MQTT_LOADGEN_SESSIONS="+strconv.Itoa(sessions), "MQTT_LOADGEN_RAW=1")
	stdin, _ := gen.StdinPipe()
	stdout, _ := gen.StdoutPipe()
	gen.Stderr = os.Stderr
	if err := gen.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); _ = gen.Wait() }()
	lines := bufio.NewScanner(stdout)
	for lines.Scan() && !strings.HasPrefix(lines.Text(), "CONNECTED") {
	}
	parked.Wait()
	time.Sleep(200 * time.Millisecond) // let the last goroutines block
	idle := settledRSS(b)
	rm := readRuntimeMetrics()
	n := float64(sessions)
	b.ReportMetric(float64(idle-base)*1024/n, "B-rss/conn")
	b.ReportMetric(float64(rm.stacks-baseRM.stacks)/n, "B-stack/conn")
	b.ReportMetric(float64(rm.stackUsed-baseRM.stackUsed)/n, "B-stack-used/conn")
	b.ReportMetric(float64(rm.heap-baseRM.heap)/n, "B-heap/conn")
	b.ReportMetric(float64(rm.goroutines-baseRM.goroutines)/n, "goroutines/conn")
}

// readLoop reads until the connection ends.
func readLoop(br *bufio.Reader) {
	for {
		if _, err := br.ReadByte(); err != nil {
			return
		}
	}
}

// writeLoop writes outbound packets until done.
func writeLoop(out chan []byte, done chan struct{}, w io.Writer) {
	for {
		select {
		case p := <-out:
			_, _ = w.Write(p)
		case <-done:
			return
		}
	}
}

// frame keeps n bytes of locals on the stack of its caller's call chain
// while next runs, like a function holding large values (mochi's
// packets.Packet, 816 B) in its frame.
//
//go:noinline
func frame2944(next func()) { var a [2944 - 64]byte; touch(a[:]); next(); touch(a[:]) }

//go:noinline
func frame1640(next func()) { var a [1640 - 64]byte; touch(a[:]); next(); touch(a[:]) }

//go:noinline
func frame1784(next func()) { var a [1784 - 64]byte; touch(a[:]); next(); touch(a[:]) }

//go:noinline
func frame4328(next func()) { var a [4328 - 64]byte; touch(a[:]); next(); touch(a[:]) }

//go:noinline
func touch(b []byte) { b[0]++ }

// readLoopFrames reads under mochi's idle frames after one CONNECT-deep
// excursion.
func readLoopFrames(br *bufio.Reader, parked *sync.WaitGroup) {
	frame2944(func() {
		frame4328(func() {}) // reading and handling CONNECT
		frame1640(func() {
			parked.Done()
			readLoop(br)
		})
	})
}

// writeLoopFrames runs writeLoop under WriteLoop's frame size.
func writeLoopFrames(out chan []byte, done chan struct{}, w io.Writer) {
	frame1784(func() { writeLoop(out, done, w) })
}
