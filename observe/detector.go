package observe

import (
	"fmt"
	"math"
)

// DetectorConfig configures a Detector. The zero value of a field means its
// default.
type DetectorConfig struct {
	// Season is the number of points in one season (a day of 5-minute
	// points is 288). 0 or 1: no seasonal component (Holt's linear trend
	// method, the same recursion as PromQL's holt_winters). Default: 0.
	Season int
	// Alpha, Beta and Gamma are the smoothing factors of the level, the
	// trend and the seasonal component, in (0, 1). Higher values follow
	// changes faster and forget faster. Defaults: 0.2, 0.01, 0.1.
	Alpha, Beta, Gamma float64
	// K is the band's half-width in units of the EWMA of the absolute
	// residual (for Gaussian noise that EWMA is about 0.8σ, so the
	// default 4 is about ±3.2σ). Wider bands miss small shifts; narrower
	// ones alert on noise. Default: 4.
	K float64
	// Consecutive is how many points in a row must fall out of the band
	// before an alert fires. Higher is quieter and later. Default: 3.
	Consecutive int
	// ResidualSmoothing is the EWMA factor of the absolute residual that
	// scales the band. Default: 0.05.
	ResidualSmoothing float64
	// Winsor clips a residual at Winsor times the residual EWMA before it
	// updates the model, so an anomaly does not teach the model (nor widen
	// the band). Default: K (residuals are clipped at the band's edge).
	Winsor float64
	// Window is the length of the rolling window whose quantiles give the
	// band during the warm-up (median ± K·IQR/1.349). Default: the season,
	// at most 256 points; 32 without a season.
	Window int
}

func (c DetectorConfig) withDefaults() DetectorConfig {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Alpha, 0.2)
	def(&c.Beta, 0.01)
	def(&c.Gamma, 0.1)
	def(&c.K, 4)
	def(&c.ResidualSmoothing, 0.05)
	def(&c.Winsor, c.K)
	if c.Consecutive == 0 {
		c.Consecutive = 3
	}
	if c.Window == 0 {
		c.Window = 32
		if c.Season > 1 {
			c.Window = min(c.Season, 256)
		}
	}
	return c
}

// Validate reports the first invalid field, by its YAML name.
func (c DetectorConfig) Validate() error {
	c = c.withDefaults()
	for _, f := range []struct {
		name string
		v    float64
	}{{"alpha", c.Alpha}, {"beta", c.Beta}, {"gamma", c.Gamma}, {"residual_smoothing", c.ResidualSmoothing}} {
		if !(f.v > 0 && f.v < 1) {
			return fmt.Errorf("%s: %v must be in (0, 1)", f.name, f.v)
		}
	}
	switch {
	case c.Season < 0:
		return fmt.Errorf("season: %d points must not be negative", c.Season)
	case !(c.K > 0) || math.IsInf(c.K, 0):
		return fmt.Errorf("k: %v must be a positive number", c.K)
	case !(c.Winsor > 0) || math.IsInf(c.Winsor, 0):
		return fmt.Errorf("winsor: %v must be a positive number", c.Winsor)
	case c.Consecutive < 1:
		return fmt.Errorf("consecutive: %d must be at least 1", c.Consecutive)
	case c.Window < 4 || c.Window > 4096:
		return fmt.Errorf("window: %d points must be between 4 and 4096", c.Window)
	}
	return nil
}

// Detector is an additive Holt-Winters forecaster with an anomaly band.
//
// Each Update compares the point with the one-step forecast; the band is
// forecast ± K·EWMA(|residual|). The model learns the first season
// (level = its mean, seasonal indices = deviations from it) and, until two
// seasons were seen, judges points by a rolling-quantile band instead.
// Residuals are winsorised before they update the level, trend, season and
// band, so an anomaly does not teach the model. An alert fires on the
// Consecutive-th point in a row out of band, once per excursion.
//
// Without a season the level and trend follow exactly the recursion of
// PromQL's holt_winters(v, Alpha, Beta) (level₀ = x₀, trend₀ = x₁ − x₀),
// which the package tests check against promtool.
//
// A Detector is not safe for concurrent use. Update does not allocate.
type Detector struct {
	cfg DetectorConfig

	n                 int // points seen
	level, prevLevel  float64
	trend             float64
	season            []float64
	scale             float64 // EWMA of |winsorised residual|
	scaleSeeded       bool
	out               int // consecutive points out of band
	clipped, alerts   uint64
	win               []float64 // ring of the last Window points
	sorted            []float64 // the same points, sorted
	winPos, winFilled int
}

// Result is the verdict on one point.
type Result struct {
	// Forecast is what the model expected; Lower and Upper bound the band.
	Forecast, Lower, Upper float64
	// WarmingUp is true while the rolling-quantile band is in use (or,
	// during the first season, when there is no band yet).
	WarmingUp bool
	// Out is true when the point fell outside the band.
	Out bool
	// Alert is true on the point that completes Consecutive points in a
	// row out of band.
	Alert bool
}

// NewDetector returns a detector, or an error naming the invalid field.
func NewDetector(cfg DetectorConfig) (*Detector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m := max(cfg.Season, 1)
	return &Detector{
		cfg:    cfg,
		season: make([]float64, m),
		win:    make([]float64, cfg.Window),
		sorted: make([]float64, 0, cfg.Window),
	}, nil
}

// Level returns the smoothed level after the last Update.
func (d *Detector) Level() float64 { return d.level }

// Trend returns the trend the last Update applied (in holt_winters'
// indexing: the trend that took the level from the previous point to this
// one).
func (d *Detector) Trend() float64 { return d.trend }

// Clipped returns how many residuals were winsorised.
func (d *Detector) Clipped() uint64 { return d.clipped }

// Alerts returns how many alerts fired.
func (d *Detector) Alerts() uint64 { return d.alerts }

// seasonal reports whether the model has a seasonal component.
func (d *Detector) seasonal() bool { return d.cfg.Season > 1 }

// warm is the number of points after which the Holt-Winters band is used.
func (d *Detector) warm() int {
	if d.seasonal() {
		return 2 * d.cfg.Season
	}
	return max(2*d.cfg.Window, 20)
}

// Update feeds the next point and returns the verdict on it. NaN and
// infinite points are ignored (a zero Result).
func (d *Detector) Update(x float64) Result {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return Result{}
	}
	var r Result
	c := &d.cfg
	fallback := d.n < d.warm()
	if fallback {
		r.WarmingUp = true
		if d.winFilled >= d.quantileMin() {
			med, spread := d.quantileBand()
			r.Forecast, r.Lower, r.Upper = med, med-c.K*spread, med+c.K*spread
			r.Out = x < r.Lower || x > r.Upper
		}
	}
	d.pushWindow(x)

	switch {
	case d.seasonal() && d.n < c.Season:
		// First season: remember it; at its end, level = mean and the
		// seasonal indices are the deviations from it.
		d.season[d.n] = x
		d.n++
		if d.n == c.Season {
			var sum float64
			for _, v := range d.season {
				sum += v
			}
			d.level = sum / float64(c.Season)
			d.prevLevel = d.level
			for i := range d.season {
				d.season[i] -= d.level
			}
		}
		return d.judge(r)
	case !d.seasonal() && d.n == 0:
		d.level = x
		d.n++
		return d.judge(r)
	case !d.seasonal() && d.n == 1:
		d.trend = x - d.level
	}

	idx := d.n % len(d.season)
	s := d.season[idx]
	trend := d.trend
	if d.n >= 2 && (!d.seasonal() || d.n > c.Season) {
		trend = c.Beta*(d.level-d.prevLevel) + (1-c.Beta)*d.trend
	}
	f := d.level + trend + s
	res := x - f
	if !fallback {
		w := c.K*d.scale + 1e-9*math.Abs(f) + 1e-12
		r.Forecast, r.Lower, r.Upper = f, f-w, f+w
		r.Out = x < r.Lower || x > r.Upper
	}
	// Winsorise: clip the residual before it teaches the model.
	if d.scaleSeeded {
		if lim := c.Winsor * d.scale; res > lim || res < -lim {
			d.clipped++
			res = math.Copysign(lim, res)
		}
	}
	xw := f + res
	d.trend = trend
	d.prevLevel = d.level
	d.level = c.Alpha*(xw-s) + (1-c.Alpha)*(d.level+trend)
	if d.seasonal() {
		d.season[idx] = c.Gamma*(xw-d.level) + (1-c.Gamma)*s
	}
	if a := math.Abs(res); !d.scaleSeeded {
		if a > 0 {
			d.scale, d.scaleSeeded = a, true
		}
	} else {
		d.scale += c.ResidualSmoothing * (a - d.scale)
	}
	d.n++
	return d.judge(r)
}

func (d *Detector) judge(r Result) Result {
	if !r.Out {
		d.out = 0
		return r
	}
	d.out++
	if d.out == d.cfg.Consecutive {
		r.Alert = true
		d.alerts++
	}
	return r
}

// quantileMin is how many points the rolling band needs: none during the
// first season of a seasonal model (a season is needed to know what is
// normal), a full window otherwise.
func (d *Detector) quantileMin() int {
	if d.seasonal() && d.n < d.cfg.Season {
		return math.MaxInt
	}
	return len(d.win)
}

// pushWindow adds x to the rolling window, keeping a sorted copy.
func (d *Detector) pushWindow(x float64) {
	if d.winFilled == len(d.win) {
		old := d.win[d.winPos]
		i := searchFloat(d.sorted, old)
		copy(d.sorted[i:], d.sorted[i+1:])
		d.sorted = d.sorted[:len(d.sorted)-1]
	} else {
		d.winFilled++
	}
	d.win[d.winPos] = x
	d.winPos++
	if d.winPos == len(d.win) {
		d.winPos = 0
	}
	i := searchFloat(d.sorted, x)
	d.sorted = d.sorted[:len(d.sorted)+1]
	copy(d.sorted[i+1:], d.sorted[i:])
	d.sorted[i] = x
}

// searchFloat returns the first index i with s[i] >= x.
func searchFloat(s []float64, x float64) int {
	lo, hi := 0, len(s)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s[m] < x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// quantileBand returns the window's median and a robust σ (IQR/1.349).
func (d *Detector) quantileBand() (median, sigma float64) {
	q := func(p float64) float64 {
		pos := p * float64(len(d.sorted)-1)
		i := int(pos)
		if i+1 >= len(d.sorted) {
			return d.sorted[len(d.sorted)-1]
		}
		frac := pos - float64(i)
		return d.sorted[i]*(1-frac) + d.sorted[i+1]*frac
	}
	iqr := q(0.75) - q(0.25)
	med := q(0.5)
	return med, iqr/1.349 + 1e-9*math.Abs(med) + 1e-12
}
