package observe

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/testenv"
)

// The tests' real OTLP peer is the collector of internal/otelcol (OTLP
// receiver, file exporter), a module of its own. It is built once into
// the Go build cache, in a directory named by the hash of its go.mod,
// go.sum and main.go, and started once for the package (TestMain stops
// it).

var (
	colOnce sync.Once
	col     *collector
	colErr  error
)

type collector struct {
	cmd  *exec.Cmd
	url  string // OTLP/HTTP base URL
	file string // the file exporter's output
	done chan struct{}
}

// collectorBinary builds the collector unless the cache has it.
func collectorBinary() (string, error) {
	src, err := filepath.Abs(filepath.Join("..", "internal", "otelcol"))
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	cache, err := exec.Command("go", "env", "GOCACHE").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOCACHE: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(cache)), "iotgw-otelcol", hex.EncodeToString(h.Sum(nil))[:16])
	bin := filepath.Join(dir, "otelcol")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp := bin + ".tmp" + fmt.Sprint(os.Getpid())
	cmd := exec.Command("go", "build", "-trimpath", "-o", tmp, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build collector: %v\n%s", err, out)
	}
	return bin, os.Rename(tmp, bin)
}

// startCollector returns the package's collector, starting it on first
// use. A machine without the Go toolchain's network access to build it
// skips (fails in CI).
func startCollector(t *testing.T) *collector {
	t.Helper()
	colOnce.Do(func() { col, colErr = launchCollector(nil, "127.0.0.1") })
	if colErr != nil {
		testenv.Skip(t, "OpenTelemetry Collector not available: "+colErr.Error())
	}
	return col
}

// launchCollector starts a collector listening on host, its command
// prefixed by wrap (for example "ip netns exec NS"): on a free port of
// the loopback, or on 4318 of a namespace's host.
func launchCollector(wrap []string, host string) (*collector, error) {
	bin, err := collectorBinary()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "otelcol-")
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(host, "4318")
	if wrap == nil {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		addr = ln.Addr().String()
		ln.Close()
	}
	c := &collector{url: "http://" + addr, file: filepath.Join(dir, "traces.jsonl"), done: make(chan struct{})}
	cfg := fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: %s
exporters:
  file:
    path: %s
    flush_interval: 50ms
service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
`, addr, c.file)
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	out := &syncBuf{}
	args := append(append([]string(nil), wrap...), bin, "--config=file:"+cfgPath)
	c.cmd = exec.Command(args[0], args[1:]...)
	c.cmd.Stdout, c.cmd.Stderr = out, out
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return c, nil
		}
		select {
		case <-c.done:
			return nil, fmt.Errorf("collector exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("collector did not listen on %s within 30s: %s", addr, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *collector) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	_ = os.RemoveAll(filepath.Dir(c.file))
}

// colSpan is a span as the file exporter writes it (OTLP JSON).
type colSpan struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
}

// spans reads back every span the collector wrote for traceID.
func (c *collector) spans(traceID string) ([]colSpan, error) {
	b, err := os.ReadFile(c.file)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []colSpan
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		var req struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Spans []colSpan `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			continue // a line being written
		}
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					if s.TraceID == traceID {
						out = append(out, s)
					}
				}
			}
		}
	}
	return out, nil
}

// waitSpans waits until the collector holds every named span of traceID.
func (c *collector) waitSpans(t *testing.T, traceID string, names ...string) []colSpan {
	t.Helper()
	var got []colSpan
	waitFor(t, "spans of "+traceID+" in the collector", 20*time.Second, func() bool {
		var err error
		if got, err = c.spans(traceID); err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, s := range got {
			have[s.Name] = true
		}
		for _, n := range names {
			if !have[n] {
				return false
			}
		}
		return true
	})
	return got
}

var _ = context.Background

// allTraceIDs returns the trace id of every span the collector wrote.
func (c *collector) allTraceIDs() ([]string, error) {
	b, err := os.ReadFile(c.file)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, l := range bytes.Split(b, []byte("\n")) {
		for {
			i := bytes.Index(l, []byte(`"traceId":"`))
			if i < 0 {
				break
			}
			l = l[i+11:]
			if len(l) >= 32 {
				out = append(out, string(l[:32]))
			}
		}
	}
	return out, nil
}
