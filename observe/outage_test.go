package observe

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/testenv"
	"github.com/iotgw/gateway/resume"
)

// outageCut is how long TestOutageKeptSpansSurviveUplinkCut keeps the
// uplink down. The default run cuts briefly; the acceptance run cuts for
// ten minutes (see BENCHMARKS.md):
//
//	go test -run TestOutageKeptSpansSurviveUplinkCut -timeout 20m ./observe -args -observe.outage=10m
var outageCut = flag.Duration("observe.outage", 3*time.Second, "uplink cut of TestOutageKeptSpansSurviveUplinkCut")

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// TestOutageKeptSpansSurviveUplinkCut: the collector sits behind a veth
// pair in a network namespace of its own (the uplink). Messages flow all
// along, every one kept (head 100 %); the link goes down for the cut and
// comes back. Every kept span reaches the collector after recovery,
// through the spool (a SQLite store of its own, whose quota is not
// reached), and nothing is counted as dropped.
func TestOutageKeptSpansSurviveUplinkCut(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ip")
	tag := fmt.Sprintf("%05d", rand.IntN(100000))
	ns, outer, inner := "obs"+tag, "vob"+tag, "vib"+tag
	octet := 1 + rand.IntN(250)
	gwIP, cloudIP := fmt.Sprintf("10.232.%d.1", octet), fmt.Sprintf("10.232.%d.2", octet)
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	ip(t, "link", "add", outer, "type", "veth", "peer", "name", inner)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", outer).Run() })
	ip(t, "link", "set", inner, "netns", ns)
	ip(t, "addr", "add", gwIP+"/30", "dev", outer)
	ip(t, "link", "set", outer, "up")
	ip(t, "netns", "exec", ns, "ip", "addr", "add", cloudIP+"/30", "dev", inner)
	ip(t, "netns", "exec", ns, "ip", "link", "set", inner, "up")
	ip(t, "netns", "exec", ns, "ip", "link", "set", "lo", "up")
	c, err := launchCollector([]string{"ip", "netns", "exec", ns}, cloudIP)
	if err != nil {
		testenv.Skip(t, "OpenTelemetry Collector not available: "+err.Error())
	}
	t.Cleanup(c.stop)

	spool, err := resume.OpenSQLiteStore(resume.SQLiteConfig{Path: filepath.Join(t.TempDir(), "telemetry.db"),
		MaxBytes: 256 << 20, Overflow: resume.OverflowDropOldest, MinFreeBytes: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = spool.Close() })
	tr, err := NewTracing(context.Background(), WithOTLPEndpoint(c.url),
		WithExportInterval(100*time.Millisecond, time.Second), WithSpool(spool, nil, 200*time.Millisecond),
		WithSampling(gateway.TraceSampling{Ratio: 1}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	g, sink := runGateway(t, tr)

	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() { // 20 messages a second throughout
		defer wg.Done()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			f := gateway.AcquireFrame()
			f.Device, f.Topic = "dev-o", "env"
			f.Payload = binary.BigEndian.AppendUint64(f.Payload, math.Float64bits(1))
			if err := g.Inject(context.Background(), f); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	time.Sleep(time.Second)
	ip(t, "link", "set", outer, "down")
	t.Logf("uplink down for %v", *outageCut)
	time.Sleep(*outageCut)
	ip(t, "link", "set", outer, "up")
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	sent := sink.contexts()
	waitFor(t, "every kept trace in the collector", 2*time.Minute+*outageCut/2, func() bool {
		have := map[string]bool{}
		spans, _ := c.allTraceIDs()
		for _, id := range spans {
			have[id] = true
		}
		for _, tc := range sent {
			if !have[tc.TraceID.String()] {
				return false
			}
		}
		return true
	})
	st := tr.Stats()
	if st.Dropped != 0 || st.Spool.Dropped != 0 || st.Spool.Put == 0 {
		t.Fatalf("stats %+v: want spans spooled during the cut and none dropped", st)
	}
	t.Logf("%d messages, all %d traces delivered; spool: %+v", len(sent), len(sent), st.Spool)
}
