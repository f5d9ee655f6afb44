package httpc

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/backoff"
	"github.com/iotgw/gateway/internal/connstats"
	"github.com/iotgw/gateway/internal/limitread"
	"github.com/iotgw/gateway/internal/tcpkeepalive"
	"github.com/iotgw/gateway/internal/waitctx"
)

// Stats are the connector's counters; see Connector.Stats.
type Stats = connstats.Stats

// Connector is an HTTP ingest endpoint plus optional pollers of device
// HTTP endpoints. Devices POST to /v1/devices/{id}/{topic...}; the reply
// is 202 only once the gateway accepted the frame.
type Connector struct {
	s     settings
	stats connstats.Table

	limits rateTable

	mu     sync.Mutex
	srv    *http.Server
	ln     net.Listener
	cancel context.CancelFunc
	pipe   *gateway.Pipeline // the server's requests deliver through it
	wg     sync.WaitGroup
	client *http.Client
}

var (
	_ gateway.DeviceConnector = (*Connector)(nil)
	_ gateway.Downlinker      = (*Connector)(nil)
)

// New builds a connector. Nothing listens until Connect.
func New(opts ...Option) (*Connector, error) {
	s := defaultSettings()
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&s); err != nil {
			return nil, fmt.Errorf("httpc: %w", err)
		}
	}
	c := &Connector{s: s}
	c.limits.rate, c.limits.burst = s.rate, float64(s.burst)
	c.client = &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAliveConfig: tcpkeepalive.Config()}).DialContext,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
	}}
	return c, nil
}

// Addr returns the listening address once connected, or nil.
func (c *Connector) Addr() net.Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ln == nil {
		return nil
	}
	return c.ln.Addr()
}

// Stats returns the connector's and each device's counters. Latency is
// the time Deliver took for ingested frames and the request time for
// polls.
func (c *Connector) Stats() Stats { return c.stats.Stats() }

// StatsReport implements gateway.StatsReporter: the totals and at most
// maxDevices devices (see connstats.Report). Denied counts requests
// refused for a wrong token or the rate limit.
func (c *Connector) StatsReport(maxDevices int) any { return c.stats.Report(maxDevices) }

// RegisterMetrics implements gateway.MetricsSource: the connector's totals
// (frames, bytes, problems by reason, sessions, mean latency).
func (c *Connector) RegisterMetrics(m metric.Meter, label ...attribute.KeyValue) (metric.Registration, error) {
	return c.stats.RegisterMetrics(m, label...)
}

var _ gateway.StatsReporter = (*Connector)(nil)

// Handler returns the ingest handler delivering to up, for hosts that
// mount it in their own server. Connect uses it too.
func (c *Connector) Handler(up gateway.Uplink) http.Handler { return c.handler(up, nil) }

// handler is Handler, delivering through p when it is not nil.
func (c *Connector) handler(up gateway.Uplink, p *gateway.Pipeline) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/devices/{id}/{topic...}", &ingest{c: c, up: up, pipe: p})
	mux.Handle("PUT /v1/devices/{id}/{topic...}", &ingest{c: c, up: up, pipe: p})
	return mux
}

// Connect starts listening (unless no address and no listener are set:
// then only the pollers run) and starts the pollers.
func (c *Connector) Connect(ctx context.Context, up gateway.Uplink) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cancel != nil {
		return errors.New("httpc: already connected")
	}
	ln := c.s.listener
	if ln == nil && c.s.addr != "" {
		lc := net.ListenConfig{KeepAliveConfig: tcpkeepalive.Config()}
		var err error
		if ln, err = lc.Listen(ctx, "tcp", c.s.addr); err != nil {
			return fmt.Errorf("httpc: listen %s: %w", c.s.addr, err)
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	if ln != nil {
		c.ln = ln
		c.pipe = gateway.NewPipeline(up, c.s.window, c.s.deliverTimeout)
		c.srv = &http.Server{
			Handler:           c.handler(up, c.pipe),
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          nil,
		}
		srv := c.srv
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				c.s.logger.Error("httpc: serve", "err", err)
			}
		}()
	}
	for _, p := range c.s.polls {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.poll(runCtx, p, up)
		}()
	}
	return nil
}

// Disconnect stops accepting requests, lets requests in flight finish
// (bounded by ctx), stops the pollers and waits for them.
func (c *Connector) Disconnect(ctx context.Context) error {
	c.mu.Lock()
	cancel, srv, pipe := c.cancel, c.srv, c.pipe
	c.cancel, c.srv, c.ln, c.pipe = nil, nil, nil, nil
	c.mu.Unlock()
	if pipe != nil {
		defer pipe.Close() // after the requests in flight
	}
	if cancel == nil {
		return nil
	}
	cancel()
	var err error
	if srv != nil {
		if err = srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
	}
	if werr := waitctx.Wait(ctx, &c.wg); werr != nil {
		return fmt.Errorf("httpc: disconnect: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("httpc: disconnect: %w", err)
	}
	return nil
}

// ValidateDeviceID reports why id cannot name a device: empty, longer
// than 128 bytes, or containing '/', '+', '#', whitespace or control
// characters.
func ValidateDeviceID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("device id: want 1..128 bytes, got %d", len(id))
	}
	for i := 0; i < len(id); i++ {
		if b := id[i]; b <= ' ' || b == 0x7f || b == '/' || b == '+' || b == '#' {
			return fmt.Errorf("device id: byte %#x at offset %d not allowed", b, i)
		}
	}
	return nil
}

// ValidateTopic reports why topic cannot be a frame topic: empty, longer
// than 256 bytes, an empty level, a wildcard, or a control character.
func ValidateTopic(topic string) error {
	if topic == "" || len(topic) > 256 {
		return fmt.Errorf("topic: want 1..256 bytes, got %d", len(topic))
	}
	level := 0
	for i := 0; i < len(topic); i++ {
		switch b := topic[i]; {
		case b == '/':
			if level == 0 {
				return fmt.Errorf("topic: empty level at offset %d", i)
			}
			level = 0
			continue
		case b < ' ' || b == 0x7f || b == '+' || b == '#':
			return fmt.Errorf("topic: byte %#x at offset %d not allowed", b, i)
		}
		level++
	}
	if level == 0 {
		return fmt.Errorf("topic: empty last level")
	}
	return nil
}

type ingest struct {
	c    *Connector
	up   gateway.Uplink
	pipe *gateway.Pipeline // nil: each request delivers on its own
}

func reply(w http.ResponseWriter, code int, reason string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, reason+"\n")
}

func (h *ingest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := h.c
	id, topic := r.PathValue("id"), r.PathValue("topic")
	if err := ValidateDeviceID(id); err != nil {
		c.stats.Total.Malformed()
		reply(w, http.StatusBadRequest, err.Error())
		return
	}
	ds := c.stats.Device(id)
	fail := func(code int, reason string, malformed bool) {
		ds.Error()
		c.stats.Total.Error()
		if malformed {
			ds.Malformed()
			c.stats.Total.Malformed()
		}
		reply(w, code, reason)
	}
	if !c.authorized(id, r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="iotgw"`)
		fail(http.StatusUnauthorized, "missing or wrong bearer token for device "+id, false)
		ds.Denied()
		c.stats.Total.Denied()
		return
	}
	if err := ValidateTopic(topic); err != nil {
		fail(http.StatusBadRequest, err.Error(), true)
		return
	}
	if r.ContentLength > c.s.maxBody {
		fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("body of %d bytes exceeds the limit of %d", r.ContentLength, c.s.maxBody), false)
		return
	}
	if wait, ok := c.limits.allow(id, time.Now()); !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		fail(http.StatusTooManyRequests, fmt.Sprintf("rate limit of %g frames/s for device %s exceeded", c.s.rate, id), false)
		ds.Denied()
		c.stats.Total.Denied()
		return
	}
	f := gateway.AcquireFrame()
	var err error
	f.Payload, err = limitread.Append(f.Payload[:0], r.Body, c.s.maxBody)
	if err != nil {
		f.Release()
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) || errors.Is(err, limitread.ErrTooLarge) {
			fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds the limit of %d bytes", c.s.maxBody), false)
			return
		}
		fail(http.StatusBadRequest, "reading body: "+err.Error(), true)
		return
	}
	if len(f.Payload) == 0 {
		f.Release()
		fail(http.StatusBadRequest, "empty body", true)
		return
	}
	f.Device, f.Topic, f.Received = id, topic, time.Now()
	f.Trace, _ = gateway.ParseTraceHeaders(r.Header.Get("traceparent"), r.Header.Get("tracestate"))
	n := len(f.Payload)
	ctx, cancel := context.WithTimeout(r.Context(), c.s.deliverTimeout)
	defer cancel()
	start := time.Now()
	if h.pipe != nil {
		err = h.pipe.Deliver(ctx, f, true) // shares a batch with concurrent requests
	} else {
		err = gateway.DeliverChecked(ctx, h.up, f) // a payload the codec rejects gets 400, not 202
	}
	ds.Latency(time.Since(start))
	switch {
	case err == nil:
		ds.Frame(n)
		c.stats.Total.Frame(n)
		reply(w, http.StatusAccepted, "accepted")
	case errors.Is(err, gateway.ErrMalformedPayload):
		fail(http.StatusBadRequest, err.Error(), true)
	case errors.Is(err, gateway.ErrDropped):
		w.Header().Set("Retry-After", "1")
		fail(http.StatusTooManyRequests, "gateway queue full, frame not accepted", false)
	case errors.Is(err, gateway.ErrClosed):
		fail(http.StatusServiceUnavailable, "gateway shutting down, frame not accepted", false)
	case errors.Is(err, context.DeadlineExceeded):
		w.Header().Set("Retry-After", "1")
		fail(http.StatusServiceUnavailable, "gateway busy, frame not accepted within "+c.s.deliverTimeout.String(), false)
	default:
		fail(http.StatusServiceUnavailable, "frame not accepted: "+err.Error(), false)
	}
}

func (c *Connector) authorized(id string, r *http.Request) bool {
	if len(c.s.tokens) == 0 {
		return true
	}
	want, ok := c.s.tokens[id]
	if !ok {
		return false
	}
	got, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return found && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// rateTable is a token bucket per device.
type rateTable struct {
	rate, burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// allow takes a token for device; when none is left it returns how long
// until one is.
func (t *rateTable) allow(device string, now time.Time) (time.Duration, bool) {
	if t.rate <= 0 {
		return 0, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buckets[device]
	if b == nil {
		if t.buckets == nil {
			t.buckets = map[string]*bucket{}
		}
		if len(t.buckets) >= maxBuckets {
			t.prune(now)
		}
		b = &bucket{tokens: t.burst, last: now}
		t.buckets[device] = b
	}
	b.tokens += now.Sub(b.last).Seconds() * t.rate
	if b.tokens > t.burst {
		b.tokens = t.burst
	}
	b.last = now
	if b.tokens < 1 {
		return time.Duration((1 - b.tokens) / t.rate * float64(time.Second)), false
	}
	b.tokens--
	return 0, true
}

// maxBuckets bounds the table when any device id is accepted.
const maxBuckets = 1 << 16

// prune drops buckets that have refilled: forgetting them changes nothing.
func (t *rateTable) prune(now time.Time) {
	for k, b := range t.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*t.rate >= t.burst {
			delete(t.buckets, k)
		}
	}
}

// poll fetches p.URL every interval and delivers each 200 response body.
// Failures back off exponentially with full jitter (never faster than the
// interval).
func (c *Connector) poll(ctx context.Context, p Poll, up gateway.Uplink) {
	ds := c.stats.Device(p.Device)
	bo := backoff.Backoff{Min: p.Interval, Max: 30 * p.Interval}
	failing := false
	for {
		err := c.pollOnce(ctx, p, up, ds)
		wait := p.Interval
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			ds.Error()
			c.stats.Total.Error()
			failing = true
			wait = max(bo.Next(), p.Interval)
			c.s.logger.Warn("httpc: poll failed", "device", p.Device, "url", p.URL, "err", err, "retry_in", wait.Round(time.Millisecond))
		} else {
			if failing {
				ds.Reconnect()
				c.stats.Total.Reconnect()
				failing = false
			}
			bo.Up()
		}
		if !backoff.Sleep(ctx, wait) {
			return
		}
	}
}

func (c *Connector) pollOnce(ctx context.Context, p Poll, up gateway.Uplink, ds *connstats.Counters) error {
	rctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return err
	}
	start := time.Now()
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("status %s", resp.Status)
	}
	f := gateway.AcquireFrame()
	f.Payload, err = limitread.Append(f.Payload[:0], resp.Body, c.s.maxBody)
	lat := time.Since(start)
	ds.Latency(lat)
	c.stats.Total.Latency(lat)
	if err != nil {
		f.Release()
		ds.Malformed()
		c.stats.Total.Malformed()
		return fmt.Errorf("body: %w", err)
	}
	f.Device, f.Topic = p.Device, p.Topic
	n := len(f.Payload)
	if err := up.Deliver(rctx, f); err != nil {
		return fmt.Errorf("deliver: %w", err)
	}
	ds.Frame(n)
	c.stats.Total.Frame(n)
	return nil
}

// Write implements gateway.Downlinker: it POSTs the payload to the
// device's endpoint (WithDeviceEndpoint) at <base>/<topic> and expects a
// 2xx answer.
func (c *Connector) Write(ctx context.Context, f *gateway.Frame) error {
	base, ok := c.s.endpoints[f.Device]
	if !ok {
		return fmt.Errorf("httpc: write: device %q has no endpoint: %w", f.Device, gateway.ErrNoRoute)
	}
	if err := ValidateTopic(f.Topic); err != nil {
		return fmt.Errorf("httpc %s: write: %w", f.Device, err)
	}
	ctx, cancel := context.WithTimeout(ctx, c.s.deliverTimeout)
	defer cancel()
	url := strings.TrimSuffix(base, "/") + "/" + f.Topic
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(f.Payload))
	if err != nil {
		return fmt.Errorf("httpc %s: write: %w", f.Device, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.client.Do(req)
	if err != nil {
		c.stats.Device(f.Device).Error()
		return fmt.Errorf("httpc %s: write %s: %w", f.Device, url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		c.stats.Device(f.Device).Error()
		return fmt.Errorf("httpc %s: write %s: status %s", f.Device, url, resp.Status)
	}
	return nil
}
