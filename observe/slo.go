package observe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/iotgw/gateway"
)

// SLO declares one service-level objective judged by a dynamic baseline:
// a series sampled every Interval, a Holt-Winters Detector with a season of
// Season, and an alert after Consecutive points out of the band
// forecast ± K·EWMA|residual|.
//
// In YAML (the observe.slos list of the gateway configuration):
//
//	observe:
//	  slos:
//	    - name: upstream-throughput
//	      series: throughput        # or {instrument: NAME, attributes: {k: v}, quantile: 0.99}
//	      interval: 1m
//	      season: 24h
//	      k: 4
//	      consecutive: 3
//	      objective: 0.99
type SLO struct {
	// Name identifies the SLO in logs, metrics (label slo) and /statz.
	Name string `yaml:"name"`
	// Series is what is measured; see Series.
	Series Series `yaml:"series"`
	// Interval is the sampling period of the series. Default: 1m.
	Interval time.Duration `yaml:"interval"`
	// Season is the period of the series' pattern (24h for a daily
	// rhythm); it must be a multiple of Interval. 0: no seasonal component.
	// Default: 0.
	Season time.Duration `yaml:"season"`
	// K is the band's half-width (DetectorConfig.K). Default: 4.
	K float64 `yaml:"k"`
	// Consecutive is how many points in a row out of band raise an alert
	// (DetectorConfig.Consecutive). Default: 3.
	Consecutive int `yaml:"consecutive"`
	// Objective is the fraction of points that should fall in the band;
	// /statz reports the attainment beside it. Default: 0.99.
	Objective float64 `yaml:"objective"`
	// Alpha, Beta and Gamma are the detector's smoothing factors; zero
	// keeps the defaults of DetectorConfig.
	Alpha float64 `yaml:"alpha"`
	Beta  float64 `yaml:"beta"`
	Gamma float64 `yaml:"gamma"`
}

// Series names what an SLO measures. In YAML it is either one of the
// shorthand names or a mapping with Instrument.
//
//	throughput       rate of gateway.plane.messages{plane=publish} (/s)
//	publish_latency  Quantile (default 0.99) of gateway.publish.latency (s)
//	error_ratio      sink errors / (published + errors), per interval
//	queue_depth      gateway.queue.depth, all queues
//	drain_rate       rate of gateway.store.transfers{state=replayed} (/s)
//
// With Instrument, any instrument of the observer's MeterProvider: a
// monotonic counter is turned into a rate per second, a gauge or
// up-down counter is read as is, a histogram gives its Quantile over the
// interval. Attributes keeps only the data points carrying those values;
// matching points are summed.
type Series struct {
	Kind       string            `yaml:"kind"`
	Instrument string            `yaml:"instrument"`
	Attributes map[string]string `yaml:"attributes"`
	Quantile   float64           `yaml:"quantile"`
}

var seriesKinds = map[string]Series{
	"throughput":      {Instrument: "gateway.plane.messages", Attributes: map[string]string{"plane": "publish"}},
	"publish_latency": {Instrument: "gateway.publish.latency", Quantile: 0.99},
	"error_ratio":     {Kind: "error_ratio"},
	"queue_depth":     {Instrument: "gateway.queue.depth"},
	"drain_rate":      {Instrument: "gateway.store.transfers", Attributes: map[string]string{"state": "replayed"}},
}

// String is the series' name in logs and /statz.
func (s Series) String() string {
	if s.Kind != "" {
		return s.Kind
	}
	return s.Instrument
}

// resolve expands a shorthand kind.
func (s Series) resolve() (Series, error) {
	if s.Kind != "" && s.Kind != "error_ratio" {
		base, ok := seriesKinds[s.Kind]
		if !ok {
			return s, fmt.Errorf("unknown series %q (want throughput, publish_latency, error_ratio, queue_depth, drain_rate or {instrument: NAME})", s.Kind)
		}
		if s.Instrument != "" {
			return s, errors.New("give either a series kind or an instrument, not both")
		}
		q := s.Quantile
		s = base
		s.Kind = ""
		if q != 0 {
			s.Quantile = q
		}
		return s, nil
	}
	if s.Kind == "" && s.Instrument == "" {
		return s, errors.New("missing: want a series kind or {instrument: NAME}")
	}
	if s.Quantile < 0 || s.Quantile >= 1 {
		return s, fmt.Errorf("quantile %v must be in (0, 1)", s.Quantile)
	}
	return s, nil
}

func (s SLO) withDefaults() SLO {
	if s.Interval == 0 {
		s.Interval = time.Minute
	}
	if s.Objective == 0 {
		s.Objective = 0.99
	}
	return s
}

// detectorConfig maps the SLO onto a DetectorConfig.
func (s SLO) detectorConfig() DetectorConfig {
	s = s.withDefaults()
	season := 0
	if s.Season > 0 {
		season = int(s.Season / s.Interval)
	}
	return DetectorConfig{Season: season, K: s.K, Consecutive: s.Consecutive, Alpha: s.Alpha, Beta: s.Beta, Gamma: s.Gamma}
}

// fieldError is a validation problem of one SLO field.
type fieldError struct {
	field string
	err   error
}

func (e *fieldError) Error() string { return e.field + ": " + e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// Validate reports the first invalid field; the error names it.
func (s SLO) Validate() error {
	f := func(field string, format string, args ...any) error {
		return &fieldError{field, fmt.Errorf(format, args...)}
	}
	if s.Name == "" {
		return f("name", "must not be empty")
	}
	if _, err := s.Series.resolve(); err != nil {
		return &fieldError{"series", err}
	}
	s = s.withDefaults()
	if s.Interval < time.Millisecond {
		return f("interval", "%v: want at least 1ms", s.Interval)
	}
	if s.Season < 0 || s.Season%s.Interval != 0 {
		return f("season", "%v: want a non-negative multiple of interval (%v)", s.Season, s.Interval)
	}
	if n := s.Season / s.Interval; n > 1<<16 {
		return f("season", "%v is %d intervals: at most 65536", s.Season, n)
	}
	if !(s.Objective > 0 && s.Objective <= 1) {
		return f("objective", "%v: want a fraction in (0, 1]", s.Objective)
	}
	if err := s.detectorConfig().Validate(); err != nil {
		field, reason, _ := cutField(err.Error())
		return f(field, "%s", reason)
	}
	return nil
}

func cutField(s string) (field, reason string, ok bool) {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == ':' && s[i+1] == ' ' {
			return s[:i], s[i+2:], true
		}
	}
	return "", s, false
}

// Config is the observe: section of the gateway configuration.
type Config struct {
	SLOs []SLO
}

type seriesYAML struct {
	Instrument string            `yaml:"instrument"`
	Attributes map[string]string `yaml:"attributes"`
	Quantile   float64           `yaml:"quantile"`
}

// DecodeConfig decodes and validates the observe: section (see
// gateway.Config.Observe). Errors carry the YAML path and position of the
// offending field, e.g. "observe.slos[1].k: ... (gw.yaml:12:10)".
func DecodeConfig(sec gateway.Section) (Config, error) {
	var raw struct {
		SLOs []gateway.Section `yaml:"slos"`
	}
	if err := sec.Decode(&raw); err != nil {
		return Config{}, err
	}
	var c Config
	var errs []error
	for _, one := range raw.SLOs {
		var y struct {
			Name        string          `yaml:"name"`
			Series      gateway.Section `yaml:"series"`
			Interval    time.Duration   `yaml:"interval"`
			Season      time.Duration   `yaml:"season"`
			K           float64         `yaml:"k"`
			Consecutive int             `yaml:"consecutive"`
			Objective   float64         `yaml:"objective"`
			Alpha       float64         `yaml:"alpha"`
			Beta        float64         `yaml:"beta"`
			Gamma       float64         `yaml:"gamma"`
		}
		if err := one.Decode(&y); err != nil {
			errs = append(errs, err)
			continue
		}
		s := SLO{Name: y.Name, Interval: y.Interval, Season: y.Season, K: y.K, Consecutive: y.Consecutive,
			Objective: y.Objective, Alpha: y.Alpha, Beta: y.Beta, Gamma: y.Gamma}
		// series: a shorthand name, or a mapping.
		var kind string
		if err := y.Series.Decode(&kind); err == nil {
			s.Series.Kind = kind
		} else {
			var sy seriesYAML
			if err := y.Series.Decode(&sy); err != nil {
				errs = append(errs, err)
				continue
			}
			s.Series = Series{Instrument: sy.Instrument, Attributes: sy.Attributes, Quantile: sy.Quantile}
		}
		if err := s.Validate(); err != nil {
			var fe *fieldError
			if errors.As(err, &fe) {
				errs = append(errs, one.Errorf(fe.field, "%v", fe.err))
			} else {
				errs = append(errs, one.Errorf("", "%v", err))
			}
			continue
		}
		c.SLOs = append(c.SLOs, s)
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Alert is one SLO alert: Consecutive points in a row fell out of the band.
type Alert struct {
	SLO    string    `json:"slo"`
	Series string    `json:"series"`
	Time   time.Time `json:"time"`
	// Value is the point that completed the run; Forecast, Lower and Upper
	// the band it was judged by.
	Value    float64 `json:"value"`
	Forecast float64 `json:"forecast"`
	Lower    float64 `json:"lower"`
	Upper    float64 `json:"upper"`
	// WarmingUp is true when the rolling-quantile band of the warm-up
	// judged the point.
	WarmingUp bool `json:"warming_up"`
}

// SLOStatus is one SLO's entry in /statz.
type SLOStatus struct {
	Name        string    `json:"name"`
	Series      string    `json:"series"`
	Points      uint64    `json:"points"`
	Value       float64   `json:"value"`
	Forecast    float64   `json:"forecast"`
	Lower       float64   `json:"lower"`
	Upper       float64   `json:"upper"`
	WarmingUp   bool      `json:"warming_up"`
	OutOfBand   int       `json:"out_of_band"` // consecutive points so far
	Alerts      uint64    `json:"alerts"`
	LastAlert   time.Time `json:"last_alert,omitzero"`
	Objective   float64   `json:"objective"`
	Attainment  float64   `json:"attainment"` // fraction of points in band
	LastErr     string    `json:"error,omitempty"`
	inBand      uint64
	judgedTotal uint64
}

// SLOSet evaluates SLOs: on a timer for those added with Add (reading the
// observer's instruments), or on demand with Feed. Alerts go to a log
// line, the observe.slo.alerts counter, the /statz "slo" section and every
// function registered with OnAlert.
type SLOSet struct {
	o   *Observer
	log *slog.Logger

	mu        sync.Mutex
	slos      map[string]*sloState
	callbacks map[int]func(Alert)
	nextCB    int
	wg        sync.WaitGroup
	stopCh    chan struct{}
	stopOnce  sync.Once

	alertCounter metric.Int64Counter
	reg          metric.Registration
}

type sloState struct {
	slo    SLO
	series Series
	det    *Detector
	st     SLOStatus
	attr   metric.MeasurementOption
	prev   sampleState
}

func newSLOSet(o *Observer, log *slog.Logger, callbacks []func(Alert)) *SLOSet {
	s := &SLOSet{o: o, log: log, slos: map[string]*sloState{}, callbacks: map[int]func(Alert){}, stopCh: make(chan struct{})}
	for _, cb := range callbacks {
		s.OnAlert(cb)
	}
	m := o.mp.Meter("github.com/iotgw/gateway/observe")
	s.alertCounter, _ = m.Int64Counter("observe.slo.alerts",
		metric.WithDescription("SLO alerts: points that completed a run of out-of-band points, by SLO."),
		metric.WithUnit("{alert}"))
	inBand, _ := m.Int64ObservableGauge("observe.slo.out_of_band",
		metric.WithDescription("Consecutive points of an SLO's series out of its band so far (0 when in band)."),
		metric.WithUnit("{point}"))
	s.reg, _ = m.RegisterCallback(func(_ context.Context, ob metric.Observer) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, st := range s.slos {
			ob.ObserveInt64(inBand, int64(st.st.OutOfBand), st.attr)
		}
		return nil
	}, inBand)
	return s
}

// OnAlert registers fn to be called (synchronously, from the evaluating
// goroutine: keep it short) with every alert, and returns a function that
// removes it. This is the hook a control plane uses, e.g. to roll back an
// update whose baseline breaks.
func (s *SLOSet) OnAlert(fn func(Alert)) (remove func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.nextCB
	s.nextCB++
	s.callbacks[id] = fn
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.callbacks, id)
	}
}

// Add validates slo and starts evaluating it every Interval against the
// observer's instruments. A name that exists already is an error.
func (s *SLOSet) Add(slo SLO) error {
	st, err := s.register(slo)
	if err != nil {
		return err
	}
	s.wg.Add(1)
	go s.loop(st)
	return nil
}

// Declare validates slo and registers it for Feed only (no timer).
func (s *SLOSet) Declare(slo SLO) error {
	_, err := s.register(slo)
	return err
}

func (s *SLOSet) register(slo SLO) (*sloState, error) {
	if err := slo.Validate(); err != nil {
		return nil, fmt.Errorf("observe: slo %q: %w", slo.Name, err)
	}
	slo = slo.withDefaults()
	series, _ := slo.Series.resolve()
	det, err := NewDetector(slo.detectorConfig())
	if err != nil {
		return nil, fmt.Errorf("observe: slo %q: %w", slo.Name, err)
	}
	st := &sloState{slo: slo, series: series, det: det,
		st:   SLOStatus{Name: slo.Name, Series: slo.Series.String(), Objective: slo.Objective},
		attr: metric.WithAttributeSet(attribute.NewSet(attribute.String("slo", slo.Name)))}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.slos[slo.Name] != nil {
		return nil, fmt.Errorf("observe: slo %q declared twice", slo.Name)
	}
	s.slos[slo.Name] = st
	return st, nil
}

func (s *SLOSet) loop(st *sloState) {
	defer s.wg.Done()
	t := time.NewTicker(st.slo.Interval)
	defer t.Stop()
	for {
		select {
		case <-s.stopCh:
			return
		case now := <-t.C:
			v, ok, err := s.sample(st, now)
			if err != nil {
				s.mu.Lock()
				st.st.LastErr = err.Error()
				s.mu.Unlock()
				continue
			}
			if ok {
				s.feed(st, v, now)
			}
		}
	}
}

// Feed judges one point of the named SLO's series (declared with Declare
// or Add) taken at t, and returns the verdict.
func (s *SLOSet) Feed(name string, v float64, t time.Time) (Result, error) {
	s.mu.Lock()
	st := s.slos[name]
	s.mu.Unlock()
	if st == nil {
		return Result{}, fmt.Errorf("observe: no slo %q", name)
	}
	return s.feed(st, v, t), nil
}

func (s *SLOSet) feed(st *sloState, v float64, t time.Time) Result {
	s.mu.Lock()
	r := st.det.Update(v)
	st.st.Points++
	st.st.Value, st.st.Forecast, st.st.Lower, st.st.Upper, st.st.WarmingUp = v, r.Forecast, r.Lower, r.Upper, r.WarmingUp
	if r.Lower != 0 || r.Upper != 0 {
		st.st.judgedTotal++
		if !r.Out {
			st.st.inBand++
		}
		st.st.Attainment = float64(st.st.inBand) / float64(st.st.judgedTotal)
	}
	if r.Out {
		st.st.OutOfBand++
	} else {
		st.st.OutOfBand = 0
	}
	var cbs []func(Alert)
	var a Alert
	if r.Alert {
		st.st.Alerts++
		st.st.LastAlert = t
		a = Alert{SLO: st.slo.Name, Series: st.st.Series, Time: t, Value: v,
			Forecast: r.Forecast, Lower: r.Lower, Upper: r.Upper, WarmingUp: r.WarmingUp}
		ids := make([]int, 0, len(s.callbacks))
		for id := range s.callbacks {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, id := range ids {
			cbs = append(cbs, s.callbacks[id])
		}
	}
	s.mu.Unlock()
	if r.Alert {
		s.alertCounter.Add(context.Background(), 1, st.attr)
		s.log.Warn("slo alert", "slo", a.SLO, "series", a.Series, "value", a.Value,
			"forecast", a.Forecast, "lower", a.Lower, "upper", a.Upper, "warming_up", a.WarmingUp,
			"decision", "alert")
		for _, cb := range cbs {
			cb(a)
		}
	}
	return r
}

// Status returns every SLO's state, by name.
func (s *SLOSet) Status() []SLOStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SLOStatus, 0, len(s.slos))
	for _, st := range s.slos {
		out = append(out, st.st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (s *SLOSet) stop() {
	s.stopOnce.Do(func() { close(s.stopCh) })
	s.wg.Wait()
	if s.reg != nil {
		_ = s.reg.Unregister()
	}
}

// sampleState is what a series needs from the previous sample to turn
// cumulative data into a per-interval value.
type sampleState struct {
	at      time.Time
	sum     float64   // counters: cumulative total
	errs    float64   // error_ratio: cumulative errors
	buckets []uint64  // histograms: cumulative counts
	bounds  []float64 // histograms: bucket bounds
	seeded  bool
}

// sample reads the SLO's series from the observer's instruments. ok is
// false for the first sample of a rate or a quantile (it needs a previous
// one).
func (s *SLOSet) sample(st *sloState, now time.Time) (float64, bool, error) {
	var rm metricdata.ResourceMetrics
	if err := s.o.reader.Collect(context.Background(), &rm); err != nil {
		return 0, false, err
	}
	return sampleFrom(&rm, st.series, &st.prev, now)
}

func sampleFrom(rm *metricdata.ResourceMetrics, se Series, prev *sampleState, now time.Time) (float64, bool, error) {
	if se.Kind == "error_ratio" {
		errs, _, _, okE := findSum(rm, "gateway.sink.errors", nil)
		pub, _, _, okP := findSum(rm, "gateway.sink.published", nil)
		if !okE && !okP {
			return 0, false, errors.New("no gateway.sink.errors or gateway.sink.published instrument (is the gateway using this observer's MeterProvider?)")
		}
		de, dp := errs-prev.errs, pub-prev.sum
		seeded := prev.seeded
		prev.errs, prev.sum, prev.seeded = errs, pub, true
		if !seeded {
			return 0, false, nil
		}
		if de+dp <= 0 {
			return 0, true, nil
		}
		return de / (de + dp), true, nil
	}
	if v, monotonic, kind, ok := findSum(rm, se.Instrument, se.Attributes); ok {
		if kind == "histogram" {
			return 0, false, fmt.Errorf("%s is a histogram", se.Instrument)
		}
		if !monotonic {
			return v, true, nil
		}
		seeded, at, last := prev.seeded, prev.at, prev.sum
		prev.sum, prev.at, prev.seeded = v, now, true
		if !seeded || !now.After(at) {
			return 0, false, nil
		}
		return (v - last) / now.Sub(at).Seconds(), true, nil
	}
	if bounds, counts, ok := findHistogram(rm, se.Instrument, se.Attributes); ok {
		seeded := prev.seeded && len(prev.buckets) == len(counts)
		delta := make([]uint64, len(counts))
		for i := range counts {
			delta[i] = counts[i]
			if seeded {
				delta[i] -= min(prev.buckets[i], counts[i])
			}
		}
		prev.buckets, prev.bounds, prev.seeded = counts, bounds, true
		if !seeded {
			return 0, false, nil
		}
		q := se.Quantile
		if q == 0 {
			q = 0.99
		}
		v, ok := histogramQuantile(q, bounds, delta)
		return v, ok, nil
	}
	return 0, false, fmt.Errorf("no instrument %q with attributes %v", se.Instrument, se.Attributes)
}

func matches(set attribute.Set, want map[string]string) bool {
	for k, v := range want {
		got, ok := set.Value(attribute.Key(k))
		if !ok || got.String() != v {
			return false
		}
	}
	return true
}

// findSum sums the matching points of a sum or gauge instrument.
func findSum(rm *metricdata.ResourceMetrics, name string, want map[string]string) (v float64, monotonic bool, kind string, found bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes, want) {
						v += float64(p.Value)
					}
				}
				return v, d.IsMonotonic, "sum", true
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes, want) {
						v += p.Value
					}
				}
				return v, d.IsMonotonic, "sum", true
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes, want) {
						v += float64(p.Value)
					}
				}
				return v, false, "gauge", true
			case metricdata.Gauge[float64]:
				for _, p := range d.DataPoints {
					if matches(p.Attributes, want) {
						v += p.Value
					}
				}
				return v, false, "gauge", true
			case metricdata.Histogram[float64], metricdata.Histogram[int64]:
				return 0, false, "histogram", false
			}
		}
	}
	return 0, false, "", false
}

// findHistogram adds up the bucket counts of the matching points.
func findHistogram(rm *metricdata.ResourceMetrics, name string, want map[string]string) (bounds []float64, counts []uint64, found bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			d, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				return nil, nil, false
			}
			for _, p := range d.DataPoints {
				if !matches(p.Attributes, want) {
					continue
				}
				if counts == nil {
					bounds = p.Bounds
					counts = make([]uint64, len(p.BucketCounts))
				}
				if len(p.BucketCounts) != len(counts) {
					continue
				}
				for i, c := range p.BucketCounts {
					counts[i] += c
				}
			}
			return bounds, counts, counts != nil
		}
	}
	return nil, nil, false
}

// histogramQuantile interpolates the q-quantile inside its bucket, as
// PromQL's histogram_quantile does (the last, open bucket answers with
// its lower bound).
func histogramQuantile(q float64, bounds []float64, counts []uint64) (float64, bool) {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0, false
	}
	rank := q * float64(total)
	var cum uint64
	for i, c := range counts {
		if float64(cum+c) >= rank && c > 0 {
			lo := 0.0
			if i > 0 {
				lo = bounds[i-1]
			}
			if i >= len(bounds) {
				return lo, true
			}
			hi := bounds[i]
			return lo + (hi-lo)*(rank-float64(cum))/float64(c), true
		}
		cum += c
	}
	return math.NaN(), false
}
