//go:build linux

package opcua

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

type countUplink struct{ n *atomic.Int64 }

func (u countUplink) Deliver(_ context.Context, f *gateway.Frame) error {
	u.n.Add(1)
	f.Release()
	return nil
}

// BenchmarkPoll1000 polls the shared server's 1000 Bench nodes, coalesced
// (MaxNodesPerRead 500: 2 ReadRequests) and one ReadRequest per node,
// and reports requests and time per cycle.
func BenchmarkPoll1000(b *testing.B) {
	p := requirePeer(b)
	var nodes []Node
	for i := range benchNodes {
		nodes = append(nodes, Node{Name: fmt.Sprintf("N%d", i), ID: fmt.Sprintf("ns=1;s=Bench.N%d", i)})
	}
	for _, tc := range []struct {
		name    string
		perRead int
	}{{"coalesced", 0}, {"per-node", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := New(WithLogger(conntest.QuietLogger()), WithTimeout(30*time.Second), WithServer(Server{Name: "b", Endpoint: p.endpoint(),
				Mode: Poll, MaxNodesPerRead: tc.perRead, Nodes: nodes}))
			if err != nil {
				b.Fatal(err)
			}
			r := c.servers["b"]
			ctx := context.Background()
			cl, _, err := r.connect(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close(ctx)
			ids, err := r.resolve(ctx, cl)
			if err != nil {
				b.Fatal(err)
			}
			per, err := r.maxPerRead(ctx, cl)
			if err != nil {
				b.Fatal(err)
			}
			var n atomic.Int64
			up := countUplink{&n}
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				if err := r.pollOnce(ctx, cl, ids, per, up); err != nil {
					b.Fatal(err)
				}
			}
			el := time.Since(start)
			b.ReportMetric(float64(r.reads.Load())/float64(b.N), "requests/cycle")
			b.ReportMetric(float64(el.Milliseconds())/float64(b.N), "ms/cycle")
			if n.Load() != int64(b.N*benchNodes) {
				b.Fatalf("%d frames, want %d", n.Load(), b.N*benchNodes)
			}
		})
	}
}

// BenchmarkSubscribe10k subscribes to 10,000 items of a node-opcua server
// (its own, not the shared one) that change every second. Each iteration
// waits for 10,000 more notifications; it reports the connector process's
// CPU time (user+system) per notification and its RSS growth per 1,000
// monitored items.
func BenchmarkSubscribe10k(b *testing.B) {
	const items = 10000
	mods, err := installNodeOPCUA()
	if err != nil {
		b.Skip(err)
	}
	script, _ := filepath.Abs("testdata/server.js")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	p := &peer{modules: mods, script: script, port: port, pki: filepath.Join(b.TempDir(), "pki")}
	p.benchNodes = items
	if err := p.start(); err != nil {
		b.Fatal(err)
	}
	defer p.stop()
	var nodes []Node
	for i := range items {
		nodes = append(nodes, Node{Name: "N" + strconv.Itoa(i), ID: "ns=1;s=Bench.N" + strconv.Itoa(i)})
	}
	runtime.GC()
	rss0 := rssBytes()
	c, err := New(WithLogger(conntest.QuietLogger()), WithTimeout(30*time.Second), WithServer(Server{Name: "b", Endpoint: p.endpoint(),
		Interval: time.Second, QueueSize: 1, Nodes: nodes}))
	if err != nil {
		b.Fatal(err)
	}
	var n atomic.Int64
	if err := c.Connect(context.Background(), countUplink{&n}); err != nil {
		b.Fatal(err)
	}
	defer c.Disconnect(context.Background())
	deadline := time.Now().Add(2 * time.Minute)
	for n.Load() < 2*items && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n.Load() < 2*items {
		b.Fatalf("only %d notifications in 2 minutes", n.Load())
	}
	b.ResetTimer()
	cpu0, n0 := cpuTime(), n.Load()
	for i := range b.N {
		want := n0 + int64(i+1)*items
		for n.Load() < want {
			time.Sleep(10 * time.Millisecond)
		}
	}
	b.StopTimer()
	got := n.Load() - n0
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(got), "cpu-ns/notification")
	b.ReportMetric(float64(rssBytes()-rss0)/(1<<20)/(items/1000), "RSS-MiB/1000-items")
	b.ReportMetric(float64(c.Stats().Servers["b"].Gaps), "gaps")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rssBytes is the process's resident set (VmRSS).
func rssBytes() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}
