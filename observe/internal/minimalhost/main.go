// Command minimalhost is the smallest useful gateway host: MQTT and Modbus
// devices, the SQLite store, an MQTT upstream, all from a YAML file. The
// observe package's dependency and binary-size checks build it with and
// without -tags withobserve (scripts/ci/observe.sh, BENCHMARKS.md).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/connector/modbus"
	mqttdev "github.com/iotgw/gateway/connector/mqtt"
	"github.com/iotgw/gateway/resume"
	"github.com/iotgw/gateway/upstream/mqtt"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: minimalhost CONFIG.yaml")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "minimalhost:", err)
		os.Exit(1)
	}
}

func run(path string) error {
	reg := gateway.NewRegistry()
	var dl mqtt.Downlink
	if err := errors.Join(mqttdev.Register(reg), modbus.Register(reg), resume.Register(reg), mqtt.Register(reg, &dl)); err != nil {
		return err
	}
	log := slog.New(logHandler())
	opts := append([]gateway.Option{gateway.WithLogger(log), gateway.WithRegistry(reg), gateway.WithConfigFile(path, true)}, observeOptions()...)
	g, err := gateway.New(opts...)
	if err != nil {
		return err
	}
	dl.Bind(g)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return g.Run(ctx)
}
