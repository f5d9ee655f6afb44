package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("peers", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 100000, "QoS 1 messages per run")
	devices := fs.String("devices", "16,1000", "comma-separated device counts; each is a series of rounds")
	rounds := fs.Int("rounds", 2, "rounds per device count; each round starts one peer further on")
	window := fs.Int("window", 20, "QoS 1 messages in flight per device (mosquitto_pub's default is 20)")
	peerList := fs.String("peers", "ceiling,gw-listener,gw-client,gw-edge,nodered", "peers to run, in round 1's order")
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on one peer's run, start-up included")
	stall := fs.Duration("stall", 30*time.Second, "end a run when no new message arrives for this long")
	warmup := fs.Int("warmup", 2000, "messages sent through each path from one device before the measured run (not counted)")
	probeTimeout := fs.Duration("probe-timeout", 90*time.Second, "bound on the wait for the first message through a newly started peer")
	nodeRED := fs.String("nodered-version", "4.1.15", "Node-RED version installed with npm")
	cache := fs.String("cache", "", "directory for the Node-RED install, reused across runs (default $XDG_CACHE_HOME/iotgw-peers or ~/.cache/iotgw-peers)")
	mosq := fs.String("mosquitto", "mosquitto", "mosquitto binary (2.0.11 for comparable figures)")
	keep := fs.Bool("keep", false, "keep the temporary directory (configurations and logs of every run)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := config{n: *n, rounds: *rounds, window: *window, timeout: *timeout, stall: *stall, probeTimeout: *probeTimeout, warmup: *warmup,
		nodeREDVersion: *nodeRED, cacheDir: *cache, keep: *keep}
	for _, f := range strings.Split(*devices, ",") {
		d, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || d < 1 {
			return fmt.Errorf("-devices: %q is not a positive count", f)
		}
		cfg.devices = append(cfg.devices, d)
	}
	for _, f := range strings.Split(*peerList, ",") {
		if f = strings.TrimSpace(f); f != "" {
			cfg.peers = append(cfg.peers, f)
		}
	}
	switch {
	case cfg.n < 10:
		return errors.New("-n: at least 10 messages")
	case cfg.warmup < 0:
		return errors.New("-warmup: not negative")
	case cfg.rounds < 1:
		return errors.New("-rounds: at least 1")
	case cfg.window < 1 || cfg.window > 65535:
		return errors.New("-window: 1 to 65535")
	case cfg.timeout <= 0 || cfg.stall <= 0 || cfg.probeTimeout <= 0:
		return errors.New("-timeout, -stall and -probe-timeout must be positive")
	case len(cfg.peers) == 0:
		return errors.New("-peers: none")
	}
	if cfg.cacheDir == "" {
		d, err := os.UserCacheDir()
		if err != nil {
			return fmt.Errorf("-cache: %w", err)
		}
		cfg.cacheDir = filepath.Join(d, "iotgw-peers")
	}
	var err error
	if cfg.mosquitto, err = exec.LookPath(*mosq); err != nil {
		return fmt.Errorf("-mosquitto: %w (Debian: apt-get install mosquitto)", err)
	}
	if cfg.moduleDir, err = moduleDir(); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	loadBefore := loadAvg()
	startAt := time.Now().UTC()
	res, err := runHarness(ctx, cfg, stderr)
	printTable(stdout, cfg, res, startAt, loadBefore, loadAvg())
	return err
}

// moduleDir returns the directory of the gateway module, which holds
// ./examples/gatewayd.
func moduleDir() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the gateway module (go run ./bench/peers)")
	}
	return filepath.Dir(mod), nil
}

func us(v float64) string {
	if v < 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

func printTable(w io.Writer, cfg config, res []result, startAt time.Time, loadBefore, loadAfter string) {
	k10, k90 := markCounts(cfg.n)
	res10ms := float64(10*time.Millisecond/time.Microsecond) / float64(max(1, k90-k10))
	fmt.Fprintf(w, "\n%s UTC; %d QoS 1 messages per run after %d to warm up, window %d per device; mosquitto %s; Node-RED %s; load average before %s, after %s; CPU figures are in steps of %.2f µs/msg (10 ms ticks)\n\n",
		startAt.Format("2006-01-02 15:04"), cfg.n, cfg.warmup, cfg.window, mosquittoVersion(cfg.mosquitto), cfg.nodeREDVersion, loadBefore, loadAfter, res10ms)
	fmt.Fprintln(w, "| devices | round | path | msg/s (10-90 %) | CPU µs/msg, forwarder + broker A (10-90 %) | forwarder | broker A | broker B | harness (devices + consumer) | CPU µs/msg, forwarder + broker A (whole run) | peak RSS | received | lost | dup | load (1/5/15 min) | note |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range res {
		if r.err != nil {
			fmt.Fprintf(w, "| %d | %d | %s | - | - | - | - | - | - | - | - | - | - | - | %s | failed: %s |\n",
				r.devices, r.round, r.peer.label, r.load, oneLine(r.err.Error()))
			continue
		}
		rate, rss := "-", "-"
		if r.rate > 0 {
			rate = strconv.FormatFloat(r.rate, 'f', 0, 64)
		}
		if r.rss > 0 {
			rss = fmt.Sprintf("%.0f MB", float64(r.rss)/1e6)
		}
		note := r.note
		if r.stray > 0 {
			note = strings.TrimSpace(note + fmt.Sprintf(" %d messages without an id", r.stray))
		}
		fmt.Fprintf(w, "| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %d | %s | %s |\n",
			r.devices, r.round, r.peer.label, rate, us(pathCPU(r.peer, r.fwdCPU, r.aCPU)), us(r.fwdCPU), us(r.aCPU), us(r.bCPU), us(r.selfCPU),
			us(pathCPU(r.peer, r.fwdAll, r.aAll)), rss, r.received, r.lost, r.dups, r.load, note)
	}
}

// pathCPU is the forwarder's CPU plus broker A's where the path has one;
// negative when either is unknown or there is no forwarder.
func pathCPU(p peer, fwd, a float64) float64 {
	if fwd < 0 || (p.needsA && a < 0) {
		return -1
	}
	if p.needsA {
		return fwd + a
	}
	return fwd
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " / ")
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func mosquittoVersion(bin string) string {
	out, _ := exec.Command(bin, "-h").CombinedOutput()
	first, _, _ := strings.Cut(string(out), "\n")
	if v, ok := strings.CutPrefix(strings.TrimSpace(first), "mosquitto version "); ok {
		return v
	}
	return "?"
}
