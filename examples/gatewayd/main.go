// Command gatewayd is the reference gateway daemon.
//
// With no flags it runs a real gateway on embedded defaults (default.yaml)
// and needs nothing installed: simulated devices feed frames through the
// pipeline into an MQTT broker inside the process, and health endpoints
// answer on 127.0.0.1:8080.
//
//	go run ./examples/gatewayd
//	mosquitto_sub -h 127.0.0.1 -p 1883 -t 'gw/#' -v   # watch the upstream
//	curl 127.0.0.1:8080/readyz
//
// With -config FILE it runs from that YAML file instead, reloading it when
// it changes or on SIGHUP. SIGINT/SIGTERM shut down cleanly.
//
// With -ota FILE (a YAML file with an ota: block, see ota.go and package
// ota) it installs signed, staged updates of its configuration and rolls
// them back when its health degrades.
package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec"
	"github.com/iotgw/gateway/connector/coap"
	"github.com/iotgw/gateway/connector/httpc"
	"github.com/iotgw/gateway/connector/modbus"
	mqttdev "github.com/iotgw/gateway/connector/mqtt"
	"github.com/iotgw/gateway/connector/sim"
	"github.com/iotgw/gateway/resume"
	"github.com/iotgw/gateway/rules"
	"github.com/iotgw/gateway/upstream/localbroker"
	"github.com/iotgw/gateway/upstream/mqtt"
)

//go:embed default.yaml
var defaultConfig []byte

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gatewayd:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gatewayd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML configuration file (default: the embedded defaults)")
	every := fs.Duration("summary", 5*time.Second, "interval of the one-line summary (0 disables)")
	level := fs.String("log-level", "", "debug, info, warn or error (default: log.level of the configuration, else info)")
	format := fs.String("log-format", "", "json or text (default: log.format of the configuration, else json)")
	jsonLogs := fs.Bool("json", false, "same as -log-format json")
	otaPath := fs.String("ota", "", "YAML file with an ota: block: run signed, staged updates (see ota.go)")
	simModbus := fs.String("sim-modbus", "", "serve a simulated Modbus TCP device on this address (default 127.0.0.1:5502 with the embedded defaults, off with -config)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var cfg *gateway.Config
	var err error
	if *configPath != "" {
		cfg, err = gateway.LoadConfig(*configPath)
	} else {
		cfg, err = gateway.ParseConfig(defaultConfig, "default.yaml")
	}
	if err != nil {
		return err
	}
	if *jsonLogs {
		*format = "json"
	}
	log, err := newLogger(cfg, *format, *level, stderr)
	if err != nil {
		return err
	}
	obs, err := newObserver(cfg, log)
	if err != nil {
		return err
	}
	defer obs.shutdown()

	if *configPath == "" && *simModbus == "" {
		*simModbus = "127.0.0.1:5502"
	}
	if *simModbus != "" {
		dev := sim.NewModbusDevice()
		if err := dev.Start(*simModbus); err != nil {
			return err
		}
		defer dev.Close()
		fmt.Fprintf(stdout, "device:   simulated Modbus TCP device on %s\n", dev.Addr())
	}

	var dl mqtt.Downlink
	reg, brokers := registry(&dl, log)
	opts := append([]gateway.Option{gateway.WithLogger(log), gateway.WithRegistry(reg)}, obs.options()...)
	var updates *otaRunner
	if *otaPath != "" {
		var err error
		if updates, err = otaOptions(*otaPath, *configPath, log); err != nil {
			return err
		}
		opts = append(opts, gateway.WithConfig(updates.run))
	} else if *configPath != "" {
		opts = append(opts, gateway.WithConfigFile(*configPath, true))
	} else {
		opts = append(opts, gateway.WithConfig(cfg))
	}
	g, err := gateway.New(opts...)
	if err != nil {
		return err
	}
	dl.Bind(g) // commands arriving on mqtt sinks' command topics go to devices

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	runErr := make(chan error, 1)
	go func() { runErr <- g.Run(ctx) }()

	var wg sync.WaitGroup
	defer wg.Wait()
	if updates != nil {
		if err := updates.start(ctx, g, &wg); err != nil {
			stop()
			<-runErr
			return err
		}
	}
	announce(ctx, g, brokers, stdout)
	wg.Add(1)
	go func() {
		defer wg.Done()
		control(ctx, g, *configPath, hup, *every, log)
	}()
	err = <-runErr
	stop()
	return err
}

// registry lists the component kinds this daemon links: the device
// connectors (simulated field, MQTT, CoAP, HTTP, Modbus TCP), the reference
// codecs, the SQLite store for edge mode, the
// embedded broker, the MQTT upstream (with downlink commands
// through dl) and the rule engine for rules.enabled. The returned function
// reports the embedded brokers built from the configuration.
func registry(dl *mqtt.Downlink, log *slog.Logger) (*gateway.Registry, func() []*localbroker.Broker) {
	reg := gateway.NewRegistry()
	rules.Register(reg, rules.Options{Logger: log})
	var mu sync.Mutex
	var built []*localbroker.Broker
	if err := errors.Join(sim.Register(reg), codec.Register(reg), resume.Register(reg), mqtt.Register(reg, dl),
		mqttdev.Register(reg), coap.Register(reg), httpc.Register(reg), modbus.Register(reg), reg.AddSink("localbroker", func(name string, spec gateway.Section) (gateway.Sink, error) {
			var c localbroker.Config
			if err := spec.Decode(&c); err != nil {
				return nil, err
			}
			b := localbroker.New(c)
			mu.Lock()
			built = append(built, b)
			mu.Unlock()
			return b, nil
		})); err != nil {
		panic(err) // the kinds above are distinct; a clash is a programming error
	}
	for _, add := range extraKinds {
		if err := add(reg); err != nil {
			panic(err) // likewise
		}
	}
	return reg, func() []*localbroker.Broker {
		mu.Lock()
		defer mu.Unlock()
		return append([]*localbroker.Broker(nil), built...)
	}
}

// newLogger builds the daemon's logger: format and level from the flags,
// else from the log: section, else JSON at info.
func newLogger(cfg *gateway.Config, format, level string, w io.Writer) (*slog.Logger, error) {
	if format == "" {
		format = cfg.Log.Format
	}
	if level == "" {
		level = cfg.Log.Level
	}
	if level == "" {
		level = "info"
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	name := cfg.Gateway.Name
	if name == "" {
		name = "gatewayd"
	}
	switch format {
	case "", "json":
		return slog.New(jsonHandler(w, lv, name)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv})), nil
	}
	return nil, fmt.Errorf("log format %q: want json or text", format)
}

// announce prints where the daemon listens once it does.
func announce(ctx context.Context, g *gateway.Gateway, brokers func() []*localbroker.Broker, out io.Writer) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ready := g.HealthAddr() != ""
		for _, b := range brokers() {
			if b.Addr() == "" {
				ready = false
			}
		}
		if ready {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if a := g.HealthAddr(); a != "" {
		fmt.Fprintf(out, "health:   http://%s/healthz  /readyz  /statz%s\n", a, metricsNote)
	}
	for _, b := range brokers() {
		if a := b.Addr(); a != "" {
			fmt.Fprintf(out, "upstream: mqtt://%s  (mosquitto_sub -h %s -t 'gw/#' -v)\n", a, hostPort(a))
		}
	}
}

func hostPort(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i] + " -p " + addr[i+1:]
		}
	}
	return addr
}

// control prints the summary line and reloads on SIGHUP.
func control(ctx context.Context, g *gateway.Gateway, configPath string, hup <-chan os.Signal, every time.Duration, log *slog.Logger) {
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	prev, prevAt := g.Stats(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if configPath == "" {
				log.Warn("SIGHUP ignored: running on embedded defaults (use -config)")
				continue
			}
			if err := g.Reload(ctx); err != nil {
				log.Error("reload", "err", err)
			}
		case now := <-tick:
			st := g.Stats()
			secs := now.Sub(prevAt).Seconds()
			log.Info("summary",
				"frames_in", st.FramesIn, "messages_out", st.Published,
				"in_per_s", fmt.Sprintf("%.0f", float64(st.FramesIn-prev.FramesIn)/secs),
				"out_per_s", fmt.Sprintf("%.0f", float64(st.Published-prev.Published)/secs),
				"drops", st.FramesDropped+st.SinkDropped, "decode_errors", st.DecodeErrors,
				"unrouted", st.Unrouted, "queue_depth", st.QueueDepth+st.SinkQueueDepth)
			prev, prevAt = st, now
		}
	}
}
