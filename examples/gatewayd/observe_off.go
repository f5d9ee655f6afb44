//go:build gw_noobserve

package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/iotgw/gateway"
)

// Built with -tags gw_noobserve: no OpenTelemetry SDK, no /metrics, the
// standard library's JSON handler; an observe: section is ignored with a
// warning.

const metricsNote = ""

type observer struct{}

func newObserver(cfg *gateway.Config, log *slog.Logger) (*observer, error) {
	if !cfg.Observe.IsZero() {
		log.Warn(fmt.Sprintf("%s ignored: this gatewayd is built without observe (-tags gw_noobserve)", cfg.Observe.Path()))
	}
	return &observer{}, nil
}

func (*observer) options() []gateway.Option { return nil }
func (*observer) shutdown()                 {}
func (*observer) onAlert(func(string))      {}

func jsonHandler(w io.Writer, lv slog.Level, _ string) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv})
}

func init() { addPart(partObserve, nil) }
