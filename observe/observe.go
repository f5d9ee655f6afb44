package observe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/iotgw/gateway"
)

// Observer owns the OpenTelemetry SDK of one host: a MeterProvider whose
// instruments are served in the Prometheus text format by Handler, from a
// registry of its own (nothing is registered globally).
type Observer struct {
	cfg      config
	res      *resource.Resource
	registry *prometheus.Registry
	mp       *sdkmetric.MeterProvider
	reader   *sdkmetric.ManualReader // SLO evaluation reads through it
	handler  http.Handler
	slos     *SLOSet
}

type config struct {
	service          string
	cardinalityLimit int
	logger           *slog.Logger
	slos             []SLO
	onAlert          []func(Alert)
}

// Option configures New.
type Option func(*config) error

// WithServiceName sets the service.name resource attribute (and the
// service_name field of the log handler built by LogHandler). Default:
// "gatewayd".
func WithServiceName(name string) Option {
	return func(c *config) error {
		if name == "" {
			return errors.New("observe: service name must not be empty")
		}
		c.service = name
		return nil
	}
}

// WithCardinalityLimit caps the series of each instrument: past limit-1
// distinct label sets, further measurements are aggregated into one
// overflow series labelled otel_metric_overflow="true", so a label that
// turns out unbounded costs one series, not one per value. Default: 500,
// far above what the gateway's bounded labels produce; a lower cap saves
// memory on a small device at the risk of folding real series together.
func WithCardinalityLimit(n int) Option {
	return func(c *config) error {
		if n < 2 {
			return fmt.Errorf("observe: cardinality limit %d: must be at least 2", n)
		}
		c.cardinalityLimit = n
		return nil
	}
}

// WithLogger sets where SLO alerts are logged. Default: slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("observe: logger is nil")
		}
		c.logger = l
		return nil
	}
}

// WithSLOs declares SLOs evaluated from the observer's own instruments
// (see SLO and DecodeConfig). Default: none.
func WithSLOs(slos ...SLO) Option {
	return func(c *config) error {
		c.slos = append(c.slos, slos...)
		return nil
	}
}

// WithAlertFunc calls fn with every SLO alert (see SLOSet.OnAlert).
func WithAlertFunc(fn func(Alert)) Option {
	return func(c *config) error {
		if fn == nil {
			return errors.New("observe: alert func is nil")
		}
		c.onAlert = append(c.onAlert, fn)
		return nil
	}
}

// New sets up the metric SDK and its Prometheus exporter.
func New(opts ...Option) (*Observer, error) {
	c := config{service: "gatewayd", cardinalityLimit: 500, logger: slog.Default()}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	res := resource.NewSchemaless(attribute.String("service.name", c.service))
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, fmt.Errorf("observe: prometheus exporter: %w", err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithResource(res),
		sdkmetric.WithReader(exp),
		sdkmetric.WithReader(reader),
		sdkmetric.WithCardinalityLimit(c.cardinalityLimit),
	)
	o := &Observer{
		cfg: c, res: res, registry: reg, mp: mp, reader: reader,
		handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
	}
	o.slos = newSLOSet(o, c.logger, c.onAlert)
	for _, s := range c.slos {
		if err := o.slos.Add(s); err != nil {
			_ = mp.Shutdown(context.Background())
			return nil, err
		}
	}
	return o, nil
}

// MeterProvider is the provider to hand to gateway.WithMeterProvider and to
// components that take one.
func (o *Observer) MeterProvider() metric.MeterProvider { return o.mp }

// Handler serves the metrics in the Prometheus text exposition format.
func (o *Observer) Handler() http.Handler { return o.handler }

// SLOs returns the observer's SLO set.
func (o *Observer) SLOs() *SLOSet { return o.slos }

// GatewayOptions returns the options that wire the observer into a
// gateway: its MeterProvider, GET /metrics on the health server, and the
// "slo" section of /statz.
func (o *Observer) GatewayOptions() []gateway.Option {
	return []gateway.Option{
		gateway.WithMeterProvider(o.mp),
		gateway.WithHealthHandler("GET /metrics", o.handler),
		gateway.WithStatzReport("slo", func() any { return o.slos.Status() }),
	}
}

// Shutdown stops the SLO evaluation and the metric SDK.
func (o *Observer) Shutdown(ctx context.Context) error {
	o.slos.stop()
	return o.mp.Shutdown(ctx)
}
