// Package conntest has the pieces connector tests share: an Uplink that
// collects frames, a quiet logger, and waiting for peers.
package conntest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

// Collector is an Uplink that keeps copies of the frames it accepts. Set
// Refuse to make Deliver return an error instead, or Hold to make it wait.
type Collector struct {
	mu     sync.Mutex
	frames []gateway.Frame
	refuse error
	hold   chan struct{}
	notify chan struct{}
}

// NewCollector returns an empty Collector.
func NewCollector() *Collector { return &Collector{notify: make(chan struct{}, 1)} }

var _ gateway.Uplink = (*Collector)(nil)

// Deliver implements gateway.Uplink.
func (c *Collector) Deliver(ctx context.Context, f *gateway.Frame) error {
	c.mu.Lock()
	hold, refuse := c.hold, c.refuse
	c.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			f.Release()
			return ctx.Err()
		}
	}
	if refuse != nil {
		f.Release()
		return refuse
	}
	cp := gateway.Frame{Device: f.Device, Topic: f.Topic, Payload: append([]byte(nil), f.Payload...), Trace: f.Trace}
	f.Release()
	c.mu.Lock()
	c.frames = append(c.frames, cp)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return nil
}

// Refuse makes Deliver fail with err (nil accepts again).
func (c *Collector) Refuse(err error) {
	c.mu.Lock()
	c.refuse = err
	c.mu.Unlock()
}

// Hold makes Deliver wait until the returned function is called.
func (c *Collector) Hold() (release func()) {
	ch := make(chan struct{})
	c.mu.Lock()
	c.hold = ch
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.hold = nil
			c.mu.Unlock()
			close(ch)
		})
	}
}

// Frames returns copies of the frames accepted so far.
func (c *Collector) Frames() []gateway.Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]gateway.Frame(nil), c.frames...)
}

// Len returns how many frames were accepted.
func (c *Collector) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.frames)
}

// WaitFor waits until ok holds for the frames collected, or fails t.
func (c *Collector) WaitFor(t testing.TB, timeout time.Duration, what string, ok func([]gateway.Frame) bool) []gateway.Frame {
	t.Helper()
	deadline := time.After(timeout)
	for {
		fs := c.Frames()
		if ok(fs) {
			return fs
		}
		select {
		case <-c.notify:
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s; have %d frames", timeout, what, len(fs))
		}
	}
}

// Eventually polls ok every 10ms until it holds, or fails t.
func Eventually(t testing.TB, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// QuietLogger logs errors only, to nowhere.
func QuietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// WaitTCP waits until addr accepts connections, or fails t.
func WaitTCP(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("peer at %s did not come up", addr)
}

// Run runs a peer tool to completion, killing it after timeout, and
// returns its combined output.
func Run(timeout time.Duration, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.WaitDelay = time.Second // do not wait on pipes a stray child still holds
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Buffer collects output written from several goroutines (a logger's
// handler, a child process) for a test to poll. The zero value is ready.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines returns the lines written so far that contain s.
func (b *Buffer) Lines(s string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// RawSink is a gateway.Sink for tests inside a gateway: each message
// arrives as "connector|device|topic|raw", raw being its "raw" point
// (the payload, with RawCodec or StrictCodec).
type RawSink chan string

// Publish implements gateway.Sink.
func (s RawSink) Publish(_ context.Context, msgs []*gateway.Message) error {
	for _, m := range msgs {
		p, _ := m.Point("raw")
		s <- m.Connector + "|" + m.Device + "|" + m.Topic + "|" + p.Value.Str()
	}
	return nil
}

// StrictCodec stands in for a JSON codec in tests of payloads a codec
// rejects: it takes only payloads that start with '{', as one "raw" point.
var StrictCodec = gateway.CodecFuncs{DecodeFunc: func(f *gateway.Frame, m *gateway.Message) error {
	if len(f.Payload) == 0 || f.Payload[0] != '{' {
		return errors.New("json: invalid character at offset 0")
	}
	m.AddPoint("raw", gateway.Bytes(f.Payload), "")
	return nil
}}

// BatchCollector is a Collector that also implements gateway.BatchUplink:
// it records the size of every DeliverBatch call and delivers each frame
// as Collector.Deliver does.
type BatchCollector struct {
	*Collector
	bmu   sync.Mutex
	sizes []int
}

// NewBatchCollector returns an empty BatchCollector.
func NewBatchCollector() *BatchCollector { return &BatchCollector{Collector: NewCollector()} }

var _ gateway.BatchUplink = (*BatchCollector)(nil)

// DeliverBatch implements gateway.BatchUplink.
func (b *BatchCollector) DeliverBatch(ctx context.Context, ds []gateway.Delivery) {
	b.bmu.Lock()
	b.sizes = append(b.sizes, len(ds))
	b.bmu.Unlock()
	gateway.DeliverBatch(ctx, b.Collector, ds)
}

// Batches returns the sizes of the DeliverBatch calls so far.
func (b *BatchCollector) Batches() []int {
	b.bmu.Lock()
	defer b.bmu.Unlock()
	return append([]int(nil), b.sizes...)
}
