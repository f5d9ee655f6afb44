package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/testenv"
)

// TestDaemonRunsAndStopsOnInterrupt builds gatewayd, runs it on a copy of
// the embedded defaults with free ports, checks /healthz and that the
// summary shows messages flowing, then sends SIGINT and expects a clean
// exit within 2 s.
func TestDaemonRunsAndStopsOnInterrupt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the daemon")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gatewayd")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build: %v", err)
	}
	modbusAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := strings.NewReplacer("127.0.0.1:8080", "127.0.0.1:0", "127.0.0.1:1883", "127.0.0.1:0",
		"127.0.0.1:1884", "127.0.0.1:0", "127.0.0.1:5683", "127.0.0.1:0", "127.0.0.1:8081", "127.0.0.1:0",
		"127.0.0.1:5502", modbusAddr).Replace(string(defaultConfig))
	cfgPath := filepath.Join(dir, "gw.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-config", cfgPath, "-summary", "300ms", "-sim-modbus", modbusAddr)
	stdout, _ := cmd.StdoutPipe()
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})

	healthRe := regexp.MustCompile(`health:\s+http://(\S+)/healthz`)
	sc := bufio.NewScanner(stdout)
	var health string
	for sc.Scan() {
		if m := healthRe.FindStringSubmatch(sc.Text()); m != nil {
			health = m[1]
			break
		}
	}
	if health == "" {
		t.Fatal("daemon did not print its health address")
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	resp, err := http.Get("http://" + health + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}

	// Logs are JSON by default, with the fixed fields first.
	outRe := regexp.MustCompile(`^\{"time":"[^"]+","level":"INFO","msg":"summary","service_name":"gatewayd","trace_id":"","span_id":"","device":"","connector":"","rule":"","decision":"".*"messages_out":(\d+)`)
	lines := bufio.NewScanner(stderr)
	flowing := false
	deadline := time.Now().Add(10 * time.Second)
	for !flowing && time.Now().Before(deadline) && lines.Scan() {
		if !strings.HasPrefix(lines.Text(), `{"time":`) {
			t.Fatalf("log line is not the JSON of observe.LogHandler: %q", lines.Text())
		}
		if m := outRe.FindStringSubmatch(lines.Text()); m != nil {
			n, _ := strconv.Atoi(m[1])
			flowing = n > 0
		}
	}
	if !flowing {
		t.Fatal("summary never showed messages flowing")
	}
	// Metrics on the health server.
	mresp, err := http.Get("http://" + health + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	mbody, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if mresp.StatusCode != 200 || !regexp.MustCompile(`gateway_plane_messages_total\{plane="publish"\} [1-9]`).Match(mbody) {
		t.Fatalf("/metrics = %d:\n%s", mresp.StatusCode, mbody)
	}
	go func() {
		for lines.Scan() {
		}
		exited <- cmd.Wait()
	}()

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGINT: %v", err)
		}
		t.Logf("shut down %v after SIGINT", time.Since(start).Round(time.Millisecond))
	case <-time.After(2 * time.Second):
		t.Fatal("still running 2s after SIGINT")
	}
}

func TestBadConfigFailsWithPath(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(p, []byte("connectors:\n  - name: f\n    sim: {devices: lots}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb strings.Builder
	err := run([]string{"-config", p}, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "connectors[0].sim.devices") {
		t.Fatalf("run with bad config: %v", err)
	}
}
