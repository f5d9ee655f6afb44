package observe

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/iotgw/gateway"
)

// TraceConfig is the YAML form of NewTracing's options, for the traces
// block of a host's observability configuration. Zero fields take the
// option's default.
//
//	traces:
//	  endpoint: http://collector:4318   # OTLP/HTTP; empty: nothing is exported
//	  service_name: gw-site-7           # default gatewayd
//	  ratio: 0.01                       # head sampling of new traces, default 0.01
//	  tail: true                        # default true
//	  latency: 1s                       # tail threshold, default 1s; 0s keeps failures only
//	  queue: 4096                       # spans waiting in memory, default 4096
//	  batch: 512                        # spans per request, default 512
//	  interval: 1s                      # default 1s
//	  timeout: 5s                       # one request, default 5s
//	  spool:                            # outage queue; default none
//	    path: /var/lib/gw/telemetry.db  # a SQLite store of its own
//	    max_bytes: 67108864             # the telemetry quota (oldest dropped first), default 64 MiB
type TraceConfig struct {
	Endpoint    string         `yaml:"endpoint"`
	ServiceName string         `yaml:"service_name"`
	Ratio       *float64       `yaml:"ratio"`
	Tail        *bool          `yaml:"tail"`
	Latency     *time.Duration `yaml:"latency"`
	Queue       int            `yaml:"queue"`
	Batch       int            `yaml:"batch"`
	Interval    time.Duration  `yaml:"interval"`
	Timeout     time.Duration  `yaml:"timeout"`
	Spool       *SpoolConfig   `yaml:"spool"`
}

// SpoolConfig is the spool: block of TraceConfig.
type SpoolConfig struct {
	Path     string `yaml:"path"`
	MaxBytes int64  `yaml:"max_bytes"`
}

// SpoolStore opens the spool's store from its configuration; a host
// passes one built on resume.NewSQLiteStore (with
// resume.OverflowDropOldest and the MaxBytes given), which this package
// does not import so that it does not link SQLite for hosts without a
// spool.
type SpoolStore func(path string, maxBytes int64) (gateway.Store, io.Closer, error)

// Options validates c and returns its options. path is the YAML path of
// the block ("observe.traces"), named in every error. With a spool block
// it opens the store with open: close it (the returned io.Closer, nil
// otherwise) after Tracing.Shutdown. yield is the spool's yield function
// (see WithSpool).
func (c *TraceConfig) Options(path string, open SpoolStore, yield func() bool) ([]TraceOption, io.Closer, error) {
	ts := gateway.DefaultTraceSampling
	if c.Ratio != nil {
		if r := *c.Ratio; math.IsNaN(r) || r < 0 || r > 1 {
			return nil, nil, fmt.Errorf("%s.ratio: %v out of range [0, 1]", path, r)
		}
		ts.Ratio = *c.Ratio
	}
	if c.Tail != nil {
		ts.Tail = *c.Tail
	}
	if c.Latency != nil {
		if *c.Latency < 0 {
			return nil, nil, fmt.Errorf("%s.latency: %v is negative", path, *c.Latency)
		}
		ts.Latency = *c.Latency
	}
	opts := []TraceOption{WithSampling(ts)}
	if c.Endpoint != "" {
		if !strings.HasPrefix(c.Endpoint, "http://") && !strings.HasPrefix(c.Endpoint, "https://") {
			return nil, nil, fmt.Errorf("%s.endpoint: %q: want an http:// or https:// URL", path, c.Endpoint)
		}
		opts = append(opts, WithOTLPEndpoint(c.Endpoint))
	}
	if c.ServiceName != "" {
		opts = append(opts, WithTraceServiceName(c.ServiceName))
	}
	if c.Queue != 0 || c.Batch != 0 {
		q, b := c.Queue, c.Batch
		if q == 0 {
			q = 4096
		}
		if b == 0 {
			b = min(512, q)
		}
		if q < 1 || b < 1 || b > q {
			return nil, nil, fmt.Errorf("%s.queue, %s.batch: %d, %d: want 1 <= batch <= queue", path, path, c.Queue, c.Batch)
		}
		opts = append(opts, WithSpanQueue(q, b))
	}
	if c.Interval != 0 || c.Timeout != 0 {
		every, timeout := c.Interval, c.Timeout
		if every == 0 {
			every = time.Second
		}
		if timeout == 0 {
			timeout = 5 * time.Second
		}
		if every < 0 || timeout < 0 {
			return nil, nil, fmt.Errorf("%s.interval, %s.timeout: %v, %v: want both positive", path, path, c.Interval, c.Timeout)
		}
		opts = append(opts, WithExportInterval(every, timeout))
	}
	var closer io.Closer
	if c.Spool != nil {
		if c.Endpoint == "" {
			return nil, nil, fmt.Errorf("%s.spool: needs %s.endpoint", path, path)
		}
		if c.Spool.Path == "" {
			return nil, nil, fmt.Errorf("%s.spool.path: required", path)
		}
		if c.Spool.MaxBytes < 0 {
			return nil, nil, fmt.Errorf("%s.spool.max_bytes: %d is negative", path, c.Spool.MaxBytes)
		}
		max := c.Spool.MaxBytes
		if max == 0 {
			max = 64 << 20
		}
		if open == nil {
			return nil, nil, fmt.Errorf("%s.spool: this host cannot open a spool store", path)
		}
		st, cl, err := open(c.Spool.Path, max)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.spool: %w", path, err)
		}
		opts = append(opts, WithSpool(st, yield, time.Second))
		closer = cl
	}
	return opts, closer, nil
}
