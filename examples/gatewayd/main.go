package main

import (
	"context"
	_ "embed"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/iotgw/gateway"
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
	version := fs.Bool("version", false, "print the build tags of this build and exit")
	d, err := newDaemon(nil, fs) // the parts add their flags
	if err != nil {
		panic(err) // the parts' kinds are distinct; a clash is a programming error
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version {
		fmt.Fprintln(stdout, "gatewayd build tags:", buildTags())
		return nil
	}
	var cfg *gateway.Config
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
	d.log = log
	obs, err := newObserver(cfg, log)
	if err != nil {
		return err
	}
	defer obs.shutdown()

	if *configPath == "" {
		defaultSimModbus(d)
	}
	stopParts, err := d.start(stdout)
	if err != nil {
		return err
	}
	defer stopParts()

	opts := append([]gateway.Option{gateway.WithLogger(log), gateway.WithRegistry(d.reg)}, d.opts...)
	opts = append(opts, obs.options()...)
	var updates *otaRunner
	if *otaPath != "" {
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
	d.bind(g)

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
		obs.onAlert(updates.u.Degrade) // an SLO alert during probation rolls the update back
		if err := updates.start(ctx, g, &wg); err != nil {
			stop()
			<-runErr
			return err
		}
	}
	announce(ctx, g, d, stdout)
	wg.Add(1)
	go func() {
		defer wg.Done()
		control(ctx, g, *configPath, hup, *every, log)
	}()
	err = <-runErr
	stop()
	return err
}

// announce prints where the daemon listens once it does.
func announce(ctx context.Context, g *gateway.Gateway, d *daemon, out io.Writer) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ready := g.HealthAddr() != ""
		for _, e := range d.endpoints() {
			if strings.HasSuffix(e.addr, "://") {
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
	for _, e := range d.endpoints() {
		if strings.HasSuffix(e.addr, "://") {
			continue
		}
		fmt.Fprintf(out, "%-9s %s  (%s)\n", e.label+":", e.addr, e.hint)
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

// newLogger builds the daemon's logger: -log-format and -log-level win over
// log.format and log.level of the configuration; JSON by default.
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
