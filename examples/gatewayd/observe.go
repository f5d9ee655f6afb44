//go:build !gw_noobserve

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/observe"
)

const metricsNote = "  /metrics"

// observer is the daemon's observe.Observer: Prometheus metrics on the
// health server, the SLOs of the observe: section, JSON logs.
type observer struct{ o *observe.Observer }

func newObserver(cfg *gateway.Config, log *slog.Logger) (*observer, error) {
	oc, err := observe.DecodeConfig(cfg.Observe)
	if err != nil {
		return nil, err
	}
	name := cfg.Gateway.Name
	if name == "" {
		name = "gatewayd"
	}
	o, err := observe.New(observe.WithServiceName(name), observe.WithLogger(log), observe.WithSLOs(oc.SLOs...))
	if err != nil {
		return nil, err
	}
	return &observer{o}, nil
}

func (o *observer) options() []gateway.Option { return o.o.GatewayOptions() }

func (o *observer) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = o.o.Shutdown(ctx)
}

// onAlert calls fn with a reason for every SLO alert (the signed-update
// probation rolls back on it).
func (o *observer) onAlert(fn func(reason string)) {
	o.o.SLOs().OnAlert(func(a observe.Alert) {
		fn(fmt.Sprintf("slo %s: %s = %g outside [%g, %g]", a.SLO, a.Series, a.Value, a.Lower, a.Upper))
	})
}

func jsonHandler(w io.Writer, lv slog.Level, service string) slog.Handler {
	return observe.NewLogHandler(w, &observe.LogOptions{Level: lv, ServiceName: service})
}

func init() { addPart(partObserve, func(*daemon) error { return nil }) }
