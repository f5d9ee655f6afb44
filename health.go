package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"time"
)

// ComponentStatus is the state of one connector or sink.
type ComponentStatus struct {
	Name  string `json:"name"`
	Up    bool   `json:"up"`
	Error string `json:"error,omitempty"`
	// Sinks only.
	Published  uint64 `json:"published,omitempty"`
	Errors     uint64 `json:"errors,omitempty"`
	Dropped    uint64 `json:"dropped,omitempty"`
	QueueDepth int    `json:"queue_depth,omitempty"`
	// Counters is the component's own report when it is a StatsReporter,
	// with at most WithStatsDevices devices.
	Counters any `json:"counters,omitempty"`
}

// Stats is a snapshot of the gateway's counters. Counters only grow.
type Stats struct {
	FramesIn      uint64 `json:"frames_in"`
	FramesDropped uint64 `json:"frames_dropped"`
	DecodeErrors  uint64 `json:"decode_errors"`
	Routed        uint64 `json:"routed"`
	Unrouted      uint64 `json:"unrouted"`
	Published     uint64 `json:"published"`
	PublishErrors uint64 `json:"publish_errors"`
	SinkDropped   uint64 `json:"sink_dropped"`
	Spilled       uint64 `json:"spilled"`
	Replayed      uint64 `json:"replayed"`
	Lost          uint64 `json:"lost"`
	// DeadLetters counts frames their codec could not decode that were
	// kept (the Store's dead letters, or the dead-letter sink or topic);
	// DeadLetterErrors those that could not be kept (in edge mode they
	// stay in the Store and are tried again); DeadLettersDropped those
	// dropped for want of a dead-letter place; MalformedRefused those
	// refused before the acknowledgement (DeliverChecked).
	DeadLetters        uint64            `json:"dead_letters"`
	DeadLetterErrors   uint64            `json:"dead_letter_errors"`
	DeadLettersDropped uint64            `json:"dead_letters_dropped"`
	MalformedRefused   uint64            `json:"malformed_refused"`
	Reloads            uint64            `json:"reloads"`
	ReloadErrors       uint64            `json:"reload_errors"`
	LastReloadErr      string            `json:"last_reload_error,omitempty"`
	QueueDepth         int               `json:"queue_depth"`
	SinkQueueDepth     int               `json:"sink_queue_depth"`
	Connectors         []ComponentStatus `json:"connectors"`
	Sinks              []ComponentStatus `json:"sinks"`
	// Drain is the Drainer's own report when it is a DrainReporter (the
	// resume EdgeStore: state, transitions, drain counters, probes).
	Drain any `json:"drain,omitempty"`
	// Reports holds the sections added with WithStatzReport, by name.
	Reports map[string]any `json:"reports,omitempty"`
}

// Stats returns a snapshot of the counters.
func (g *Gateway) Stats() Stats {
	var st Stats
	for _, sh := range g.shards {
		st.FramesIn += sh.framesIn.Load()
		st.FramesDropped += sh.framesDrop.Load()
		st.DecodeErrors += sh.decodeErrors.Load()
		st.Routed += sh.routed.Load()
		st.Unrouted += sh.unrouted.Load()
		st.QueueDepth += len(sh.frames)
	}
	st.Spilled = g.stats.spilled.Load()
	st.Replayed = g.stats.replayed.Load()
	st.Lost = g.stats.lostAtShutdown.Load()
	st.DeadLetters = g.stats.deadLetters.Load()
	st.DeadLetterErrors = g.stats.deadLetterErrors.Load()
	st.DeadLettersDropped = g.stats.deadLettersDropped.Load()
	st.MalformedRefused = g.stats.malformedRefused.Load()
	st.Reloads = g.stats.reloads.Load()
	st.ReloadErrors = g.stats.reloadErrors.Load()
	if r, ok := g.s.drainer.(DrainReporter); ok {
		st.Drain = r.DrainStatus()
	}
	if len(g.s.statzReports) > 0 {
		st.Reports = make(map[string]any, len(g.s.statzReports))
		for name, report := range g.s.statzReports {
			st.Reports[name] = report()
		}
	}
	// Reports are taken after g.mu is released: a component's own lock
	// never nests inside the gateway's.
	connReps, sinkReps := map[string]StatsReporter{}, map[string]StatsReporter{}
	g.mu.Lock()
	if g.reloadErr != nil {
		st.LastReloadErr = g.reloadErr.Error()
	}
	for _, cr := range g.connectors {
		cs := ComponentStatus{Name: cr.nc.name, Up: cr.up.Load()}
		if e := cr.lastErr.Load(); e != nil {
			cs.Error = *e
		}
		st.Connectors = append(st.Connectors, cs)
	}
	for _, cr := range g.connectors {
		if r, ok := cr.nc.conn.(StatsReporter); ok {
			connReps[cr.nc.name] = r
		}
	}
	for _, sr := range g.retired {
		st.Published += sr.out.Load()
		st.PublishErrors += sr.errs.Load()
		st.SinkDropped += sr.dropped.Load()
	}
	for _, sr := range g.sinks {
		cs := ComponentStatus{
			Name: sr.name, Up: sr.healthy.Load(), Published: sr.out.Load(),
			Errors: sr.errs.Load(), Dropped: sr.dropped.Load(), QueueDepth: len(sr.q),
		}
		if e := sr.lastErr.Load(); e != nil && !cs.Up {
			cs.Error = *e
		}
		st.Published += cs.Published
		st.PublishErrors += cs.Errors
		st.SinkDropped += cs.Dropped
		st.SinkQueueDepth += cs.QueueDepth
		st.Sinks = append(st.Sinks, cs)
		if r, ok := sr.current().sink.(StatsReporter); ok {
			sinkReps[sr.name] = r
		}
	}
	g.mu.Unlock()
	for i := range st.Connectors {
		if r := connReps[st.Connectors[i].Name]; r != nil {
			st.Connectors[i].Counters = r.StatsReport(g.s.statsDevices)
		}
	}
	for i := range st.Sinks {
		if r := sinkReps[st.Sinks[i].Name]; r != nil {
			st.Sinks[i].Counters = r.StatsReport(g.s.statsDevices)
		}
	}
	sort.Slice(st.Connectors, func(i, j int) bool { return st.Connectors[i].Name < st.Connectors[j].Name })
	sort.Slice(st.Sinks, func(i, j int) bool { return st.Sinks[i].Name < st.Sinks[j].Name })
	return st
}

// Ready reports nil when every connector is connected and every sink is
// healthy (its last publish succeeded and, if it implements Checker, its
// Check passes), and otherwise an error naming what is not ready.
func (g *Gateway) Ready(ctx context.Context) error {
	g.mu.Lock()
	running := g.running
	conns := make([]*connRun, 0, len(g.connectors))
	for _, cr := range g.connectors {
		conns = append(conns, cr)
	}
	sinks := make([]*sinkRun, 0, len(g.sinks))
	for _, sr := range g.sinks {
		sinks = append(sinks, sr)
	}
	g.mu.Unlock()
	if !running {
		return errors.New("gateway not running")
	}
	select {
	case <-g.stopCh:
		return errors.New("gateway shutting down")
	default:
	}
	var errs []error
	for _, cr := range conns {
		if !cr.up.Load() {
			why := "not connected"
			if e := cr.lastErr.Load(); e != nil {
				why = *e
			}
			errs = append(errs, fmt.Errorf("connector %s: %s", cr.nc.name, why))
			continue
		}
		if c, ok := cr.nc.conn.(Checker); ok {
			if err := c.Check(ctx); err != nil {
				errs = append(errs, fmt.Errorf("connector %s: %w", cr.nc.name, err))
			}
		}
	}
	for _, sr := range sinks {
		if !sr.healthy.Load() {
			why := "publish failing"
			if e := sr.lastErr.Load(); e != nil {
				why = *e
			}
			errs = append(errs, fmt.Errorf("sink %s: %s", sr.name, why))
			continue
		}
		if c, ok := sr.current().sink.(Checker); ok {
			if err := c.Check(ctx); err != nil {
				errs = append(errs, fmt.Errorf("sink %s: %w", sr.name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Handler serves the control plane's HTTP endpoints:
//
//	GET /healthz  200 while the gateway process is alive and Run is active
//	GET /readyz   200 when Ready returns nil, else 503 with the reasons
//	GET /statz    the Stats snapshot as JSON: the gateway's counters, and
//	              for each connector and sink its state and, when it is a
//	              StatsReporter, its own counters ("counters": totals and
//	              at most WithStatsDevices devices, see StatsReporter)
//
// and whatever was added with WithHealthHandler (e.g. GET /metrics).
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, hh := range g.s.healthHandlers {
		mux.Handle(hh.pattern, hh.h)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-g.doneCh:
			http.Error(w, "stopped", http.StatusServiceUnavailable)
		default:
			_, _ = w.Write([]byte("ok\n"))
		}
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := g.Ready(ctx); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /statz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(g.Stats())
	})
	return mux
}

func (g *Gateway) startHealth(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("gateway: health server: %w", err)
	}
	g.mu.Lock()
	g.healthLn = ln
	g.mu.Unlock()
	g.health = &http.Server{Handler: g.Handler(), ReadHeaderTimeout: 5 * time.Second}
	g.healthWG.Add(1)
	go func() {
		defer g.healthWG.Done()
		if err := g.health.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Error("health server", "err", err)
		}
	}()
	g.log.Info("health server listening", "addr", ln.Addr().String())
	return nil
}

// HealthAddr returns the address the health server listens on, or "" when
// it is not running. Useful with WithHealthAddress(":0").
func (g *Gateway) HealthAddr() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.healthLn == nil {
		return ""
	}
	return g.healthLn.Addr().String()
}
