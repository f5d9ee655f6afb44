package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/ota"
)

// otaRunner runs signed updates for gatewayd (-ota FILE, a YAML file with
// an ota: block; see package ota). The gateway then runs the current
// generation's gateway.yaml, or the -config file (or the embedded
// defaults) while there is none; the file is not watched, since updates
// replace it.
type otaRunner struct {
	cfg      *ota.Config
	base     *gateway.Config
	run      *gateway.Config // what the gateway starts with
	applier  *ota.GatewayApplier
	counters *ota.Counters
	replay   *ota.ReplayDeadLetters
	u        *ota.Updater
	log      *slog.Logger
}

// otaOptions reads the base configuration (-config, or the embedded
// defaults) and sets up updates from the ota: file.
func otaOptions(otaPath, configPath string, log *slog.Logger) (*otaRunner, error) {
	var base *gateway.Config
	var err error
	if configPath != "" {
		base, err = gateway.LoadConfig(configPath)
	} else {
		base, err = gateway.ParseConfig(defaultConfig, "default.yaml")
	}
	if err != nil {
		return nil, err
	}
	return setupOTA(otaPath, base, log)
}

// setupOTA reads the ota: block, recovers the state directory and returns
// the configuration to start the gateway with.
func setupOTA(path string, base *gateway.Config, log *slog.Logger) (*otaRunner, error) {
	c, err := ota.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	o := &otaRunner{cfg: c, base: base, log: log, applier: &ota.GatewayApplier{Base: base},
		counters: &ota.Counters{MaxErrorRatio: c.MaxErrorRatio, ReadyGrace: c.ReadyGrace}, replay: &ota.ReplayDeadLetters{}}
	name := c.Gateway
	if name == "" {
		name = base.Gateway.Name
	}
	opts := []ota.Option{ota.WithLogger(log), ota.WithTarget(name, c.Labels), ota.WithProbation(c.Probation, c.CheckInterval),
		ota.WithHealth(o.counters), ota.WithHooks(o.replay)}
	if c.MaxBundleSize > 0 {
		opts = append(opts, ota.WithMaxBundleSize(c.MaxBundleSize))
	}
	o.u, err = ota.New(c.Dir, ota.Trust{Keys: c.TrustedKeys, Threshold: c.Threshold}, o.applier, opts...)
	if err != nil {
		return nil, err
	}
	cur, err := o.u.Current()
	if err != nil {
		return nil, err
	}
	if o.run, err = o.applier.Config(cur); err != nil {
		return nil, fmt.Errorf("ota: generation %s: %w", cur.Name, err)
	}
	st := o.u.Status()
	log.Info("ota: running", "generation", st.Current, "version", st.Version, "state", st.State)
	return o, nil
}

// start binds the gateway and runs the sources until ctx ends.
func (o *otaRunner) start(ctx context.Context, g *gateway.Gateway, wg *sync.WaitGroup) error {
	o.applier.Gateway, o.replay.Gateway = g, g
	o.counters.Stats, o.counters.Ready = g.Stats, g.Ready
	var sources []ota.Source
	c := o.cfg
	if c.Sources.Dir != "" {
		sources = append(sources, &ota.DirSource{Dir: c.Sources.Dir})
	}
	httpSrc := func() *ota.HTTPSource {
		return &ota.HTTPSource{URL: c.Sources.HTTP.URL, Dir: filepath.Join(c.Dir, "download"), MaxSize: c.MaxBundleSize,
			Client: &http.Client{Timeout: c.Sources.HTTP.Timeout}}
	}
	if c.Sources.HTTP.URL != "" {
		sources = append(sources, httpSrc())
	}
	var ch *ota.MQTTChannel
	if m := c.Sources.MQTT; m.Broker != "" {
		name := c.Gateway
		if name == "" {
			name = o.base.Gateway.Name
		}
		id := m.ClientID
		if id == "" {
			id = "iotgw-ota-" + name
		}
		var err error
		ch, err = ota.NewMQTTChannel(paho.NewClientOptions().AddBroker(m.Broker).SetClientID(id).SetUsername(m.Username).
			SetPassword(m.Password).SetMaxReconnectInterval(30*time.Second), m.Prefix, name, m.Groups...)
		if err != nil {
			return err
		}
		h := httpSrc()
		h.Dir = filepath.Join(c.Dir, "download-mqtt")
		ch.HTTP = h
		sources = append(sources, ch)
		o.u.OnReport(ch.Report)
	}
	wg.Add(2)
	go func() { defer wg.Done(); o.counters.Watch(ctx, time.Second) }()
	go func() {
		defer wg.Done()
		_ = o.u.Run(ctx, c.Poll, sources...)
		if ch != nil {
			ch.Close()
		}
	}()
	return nil
}
