package observe

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/conntest"
	"github.com/iotgw/gateway/internal/testenv"
)

// promServer is one real Prometheus server shared by the package's tests:
// started by the first test that needs it, stopped by TestMain. Targets
// are added through a file_sd file.
type promServer struct {
	cmd     *exec.Cmd
	dir     string
	addr    string
	targets string
	mu      sync.Mutex
	list    []string
	exited  chan struct{}
}

var (
	promOnce   sync.Once
	promShared *promServer
	promErr    error
)

// prometheus returns the shared server, starting it on first use.
func prometheusServer(t *testing.T) *promServer {
	t.Helper()
	bin := testenv.RequireCommand(t, "prometheus")
	promOnce.Do(func() { promShared, promErr = startPrometheus(bin) })
	if promErr != nil {
		t.Fatal(promErr)
	}
	return promShared
}

func startPrometheus(bin string) (*promServer, error) {
	dir, err := os.MkdirTemp("", "observe-prom-")
	if err != nil {
		return nil, err
	}
	p := &promServer{dir: dir, targets: filepath.Join(dir, "targets.json"), exited: make(chan struct{})}
	if err := p.writeTargets(); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: gateway
    file_sd_configs:
      - files: [%q]
        refresh_interval: 1s
`, p.targets)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	// A free port; a collision shows as Prometheus exiting, reported below.
	ln, err := (&net0{}).listen()
	if err != nil {
		return nil, err
	}
	p.addr = ln
	p.cmd = exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+p.addr)
	var logs conntest.Buffer
	p.cmd.Stdout, p.cmd.Stderr = &logs, &logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			return nil, fmt.Errorf("prometheus exited:\n%s", logs.String())
		default:
		}
		if resp, err := http.Get("http://" + p.addr + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop()
	return nil, fmt.Errorf("prometheus not ready in 30s:\n%s", logs.String())
}

func (p *promServer) writeTargets() error {
	b, _ := json.Marshal([]map[string]any{{"targets": p.list}})
	tmp := p.targets + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p.targets)
}

func (p *promServer) addTarget(t *testing.T, hostport string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.list = append(p.list, hostport)
	if err := p.writeTargets(); err != nil {
		t.Fatal(err)
	}
}

func (p *promServer) stop() {
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	_ = os.RemoveAll(p.dir)
}

// query runs an instant query and returns the result vector.
func (p *promServer) query(q string) ([]promSample, error) {
	resp, err := http.Get("http://" + p.addr + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []promSample `json:"result"`
		} `json:"data"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", q, r.Error)
	}
	return r.Data.Result, nil
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// TestPrometheusScrapesGateway: a real Prometheus server scrapes a running
// gateway's /metrics and can query its series.
func TestPrometheusScrapesGateway(t *testing.T) {
	p := prometheusServer(t)
	r := runObserved(t)
	r.inject(t, 42, func(i int) string { return fmt.Sprintf("dev-%d", i) })
	p.addTarget(t, strings.TrimPrefix(r.url, "http://"))
	q := fmt.Sprintf(`gateway_plane_messages_total{plane="publish",instance=%q}`, strings.TrimPrefix(r.url, "http://"))
	var last []promSample
	var lastErr error
	conntest.Eventually(t, 30*time.Second, "Prometheus to scrape the gateway", func() bool {
		last, lastErr = p.query(q)
		return lastErr == nil && len(last) == 1 && last[0].Value[1] == "42"
	})
	up, err := p.query(fmt.Sprintf(`up{instance=%q}`, strings.TrimPrefix(r.url, "http://")))
	if err != nil || len(up) != 1 || up[0].Value[1] != "1" {
		t.Fatalf("up = %v, %v", up, err)
	}
	// The histogram arrives whole: a quantile can be computed from it.
	hq, err := p.query(fmt.Sprintf(`histogram_quantile(0.99, gateway_publish_latency_seconds_bucket{instance=%q})`, strings.TrimPrefix(r.url, "http://")))
	if err != nil || len(hq) != 1 {
		t.Fatalf("histogram_quantile: %v, %v", hq, err)
	}
}
