package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// A peer is one way of doing the job: the forwarding process it starts
// (none for the ceiling) and where the devices publish.
type peer struct {
	name  string
	label string
	// needsA: devices publish to broker A, which the forwarder subscribes
	// to; its CPU is counted with the forwarder's.
	needsA bool
	// start starts the forwarder for one run and returns it (nil for none)
	// and the address devices publish to.
	start func(ctx context.Context, r *runEnv) (*proc, string, error)
}

// runEnv is what a peer's start gets for one run.
type runEnv struct {
	h       *harness
	dir     string // this run's own directory
	brokerA string // host:port, "" unless needsA
	brokerB string
}

var allPeers = []peer{
	{name: "ceiling", label: "ceiling: devices straight into broker B", start: startCeiling},
	{name: "gw-listener", label: "gatewayd, MQTT listener (devices connect to it) → mqtt sink", start: startGatewayListener},
	{name: "gw-client", label: "gatewayd, MQTT client connector (plus broker A) → mqtt sink", needsA: true, start: startGatewayClient},
	{name: "gw-edge", label: "gatewayd client connector, edge mode (SQLite, synchronous=FULL) (plus broker A)", needsA: true, start: startGatewayEdge},
	{name: "nodered", label: "Node-RED (plus broker A): mqtt in → function → mqtt out", needsA: true, start: startNodeRED},
}

func peerByName(name string) (peer, bool) {
	for _, p := range allPeers {
		if p.name == name {
			return p, true
		}
	}
	return peer{}, false
}

func startCeiling(_ context.Context, r *runEnv) (*proc, string, error) {
	return nil, r.brokerB, nil
}

// gatewayd configurations. Everything not set keeps gatewayd's defaults;
// the upstream is QoS 1 (mqtt.qos), the sink's default window of 64.
const gwCommon = `gateway:
  name: peers
  mode: %s
  shutdown_timeout: 2s
mqtt:
  qos: 1
health:
  address: 127.0.0.1:%d
codecs:
  - name: json
    json: {}
sinks:
  - name: up
    mqtt: {broker: "tcp://%s", client_id: gw-peers-up}
routes:
  - name: all
    topic: "#"
    sinks: [up]
`

const gwListener = `connectors:
  - name: devices
    codec: json
    mqtt:
      mode: listener
      address: %s
      anonymous: true
      max_sessions: 20000
`

const gwClient = `connectors:
  - name: devices
    codec: json
    mqtt:
      mode: client
      broker: "tcp://%s"
      client_id: gw-peers-south
      topics: ["devices/{device}/#"]
      qos: 1
`

const gwStore = `store:
  sqlite:
    path: %s
    synchronous: FULL
`

func startGatewayListener(ctx context.Context, r *runEnv) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := startGatewayd(ctx, r, "direct", fmt.Sprintf(gwListener, addr), "")
	if err != nil {
		return nil, "", err
	}
	if err := waitListening(ctx, p, addr, 20*time.Second); err != nil {
		r.h.ps.stop(p, 2*time.Second)
		return nil, "", err
	}
	return p, addr, nil
}

func startGatewayClient(ctx context.Context, r *runEnv) (*proc, string, error) {
	p, err := startGatewayd(ctx, r, "direct", fmt.Sprintf(gwClient, r.brokerA), "")
	return p, r.brokerA, err
}

func startGatewayEdge(ctx context.Context, r *runEnv) (*proc, string, error) {
	store := fmt.Sprintf(gwStore, filepath.Join(r.dir, "queue.db"))
	p, err := startGatewayd(ctx, r, "edge", fmt.Sprintf(gwClient, r.brokerA), store)
	return p, r.brokerA, err
}

func startGatewayd(ctx context.Context, r *runEnv, mode, connectors, store string) (*proc, error) {
	bin, err := r.h.gatewayd(ctx)
	if err != nil {
		return nil, err
	}
	health, err := freePort()
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(gwCommon, mode, health, r.brokerB) + connectors + store
	path := filepath.Join(r.dir, "gatewayd.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return r.h.ps.start("gatewayd", filepath.Join(r.dir, "gatewayd.log"), r.dir, nil,
		bin, "-config", path, "-summary", "0", "-log-level", "warn")
}

// gatewayd builds ./examples/gatewayd once per harness run.
func (h *harness) gatewayd(ctx context.Context) (string, error) {
	h.buildOnce.Do(func() {
		bin := filepath.Join(h.tmp, "gatewayd")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./examples/gatewayd")
		cmd.Dir = h.cfg.moduleDir
		if out, err := cmd.CombinedOutput(); err != nil {
			h.buildErr = fmt.Errorf("go build ./examples/gatewayd: %v\n%s", err, out)
			return
		}
		h.gatewaydBin = bin
	})
	return h.gatewaydBin, h.buildErr
}

// Node-RED: installed with npm into the cache directory once, then started
// headless (no editor, no admin API, no HTTP nodes) with its own userDir.

const nodeREDSettings = `module.exports = {
    uiHost: "127.0.0.1",
    uiPort: %d,
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    flowFile: "flows.json",
    credentialSecret: false,
    logging: { console: { level: "warn", metrics: false, audit: false } },
};
`

// The flow: mqtt in (broker A, QoS 1, buffer payload) → function
// (pass-through) → mqtt out (broker B, QoS 1, topic from msg.topic).
const nodeREDFlow = `[
 {"id":"peers-tab","type":"tab","label":"peers","disabled":false,"info":""},
 {"id":"broker-a","type":"mqtt-broker","name":"A","broker":"127.0.0.1","port":"%d","clientid":"nodered-in","autoConnect":true,"usetls":false,"protocolVersion":"4","keepalive":"60","cleansession":true,"autoUnsubscribe":true},
 {"id":"broker-b","type":"mqtt-broker","name":"B","broker":"127.0.0.1","port":"%d","clientid":"nodered-out","autoConnect":true,"usetls":false,"protocolVersion":"4","keepalive":"60","cleansession":true,"autoUnsubscribe":true},
 {"id":"in","type":"mqtt in","z":"peers-tab","name":"","topic":"devices/#","qos":"1","datatype":"buffer","broker":"broker-a","nl":false,"rap":false,"inputs":0,"x":100,"y":100,"wires":[["fn"]]},
 {"id":"fn","type":"function","z":"peers-tab","name":"pass","func":"return msg;","outputs":1,"timeout":0,"noerr":0,"initialize":"","finalize":"","libs":[],"x":300,"y":100,"wires":[["out"]]},
 {"id":"out","type":"mqtt out","z":"peers-tab","name":"","topic":"","qos":"1","retain":"false","respTopic":"","contentType":"","userProps":"","correl":"","expiry":"","broker":"broker-b","x":500,"y":100,"wires":[]}
]
`

func startNodeRED(ctx context.Context, r *runEnv) (*proc, string, error) {
	redJS, err := r.h.nodeRED(ctx)
	if err != nil {
		return nil, "", err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, "", errors.New("node-red: needs node on PATH")
	}
	ui, err := freePort()
	if err != nil {
		return nil, "", err
	}
	userDir := filepath.Join(r.dir, "nodered")
	if err := os.MkdirAll(userDir, 0o755); err != nil {
		return nil, "", err
	}
	var pa, pb int
	fmt.Sscanf(r.brokerA[strings.LastIndexByte(r.brokerA, ':')+1:], "%d", &pa)
	fmt.Sscanf(r.brokerB[strings.LastIndexByte(r.brokerB, ':')+1:], "%d", &pb)
	settings := filepath.Join(userDir, "settings.js")
	if err := errors.Join(
		os.WriteFile(settings, fmt.Appendf(nil, nodeREDSettings, ui), 0o644),
		os.WriteFile(filepath.Join(userDir, "flows.json"), fmt.Appendf(nil, nodeREDFlow, pa, pb), 0o644),
	); err != nil {
		return nil, "", err
	}
	p, err := r.h.ps.start("node-red", filepath.Join(r.dir, "nodered.log"), userDir,
		[]string{"NODE_RED_ENABLE_PROJECTS=false"},
		node, redJS, "--settings", settings, "--userDir", userDir, "flows.json")
	return p, r.brokerA, err
}

// nodeRED installs node-red@version into the cache directory unless it is
// there already, and returns the path of its red.js. It tries once per
// harness run.
func (h *harness) nodeRED(ctx context.Context) (string, error) {
	h.nodeREDOnce.Do(func() { h.redJS, h.nodeREDErr = h.installNodeRED(ctx) })
	return h.redJS, h.nodeREDErr
}

func (h *harness) installNodeRED(ctx context.Context) (string, error) {
	dir := filepath.Join(h.cfg.cacheDir, "node-red-"+h.cfg.nodeREDVersion)
	redJS := filepath.Join(dir, "node_modules", "node-red", "red.js")
	if _, err := os.Stat(redJS); err == nil {
		return redJS, nil
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		return "", errors.New("node-red: needs npm on PATH to install it")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	fmt.Fprintf(h.out, "installing node-red@%s into %s (once)\n", h.cfg.nodeREDVersion, dir)
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, npm, "install", "--no-audit", "--no-fund", "--omit=dev",
		"--prefix", dir, "node-red@"+h.cfg.nodeREDVersion)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm install node-red@%s: %v\n%s", h.cfg.nodeREDVersion, err, lastLines(string(out), 10))
	}
	if _, err := os.Stat(redJS); err != nil {
		return "", fmt.Errorf("npm install node-red@%s: no %s afterwards", h.cfg.nodeREDVersion, redJS)
	}
	return redJS, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
