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
	// (Defaults of this struct were chosen on synthetic steps and the NAB
	// series; BENCHMARKS.md has the numbers.)
	Alpha, Beta, Gamma float64
	// K is the band's half-width in units of the EWMA of the absolute
	// residual (for Gaussian noise that EWMA is about 0.8σ, so the
	// default 4 is about ±3.2σ); the band takes the larger of the global
	// EWMA and the EWMA kept for the point's position in the season, so
	// a noisier hour of the day gets a wider band. Wider bands miss small
	// shifts; narrower ones alert on noise. Default: 4.
	K float64
	// Consecutive is how many points in a row must fall out of the band
	// before an alert fires; the same number of points also forms the
	// shift test: an alert fires as well when the mean residual of the
	// last Consecutive points leaves the band narrowed by √Consecutive (a
	// level shift whose single points hide in the noise). Higher is
	// quieter and later. Default: 2, at most 64.
	Consecutive int
	// ResidualSmoothing is the EWMA factor of the absolute residual that
	// scales the band. Default: 0.05.
	ResidualSmoothing float64
	// Winsor clips a residual at Winsor times the residual EWMA before it
	// updates the model, so an anomaly does not teach the model (nor widen
	// the band). Default: K (residuals are clipped at the band's edge).
	Winsor float64
	// Cooldown is how many points after an alert no new alert fires
	// (points are still judged and reported Out). It keeps a noisy or
	// shifted series from paging again for the same incident. Default:
	// one season (none without a season); a negative value means none.
	Cooldown int
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
		c.Consecutive = 2
	}
	if c.Cooldown == 0 {
		c.Cooldown = c.Season
	} else if c.Cooldown < 0 {
		c.Cooldown = 0
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
	case c.Consecutive < 1 || c.Consecutive > 64:
		return fmt.Errorf("consecutive: %d must be between 1 and 64", c.Consecutive)
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
	phaseScale        []float64 // per season position: EWMA of |winsorised residual|
	scale             float64   // EWMA of |winsorised residual|
	scaleSeeded       bool
	out               int         // consecutive points out of band
	resRing           [64]float64 // the last Consecutive residuals
	resSum            float64
	resN, resPos      int
	sqrtN             float64 // √Consecutive: |mean| > w/√n ⇔ |sum| > w·√n
	shifted           bool    // the shift test is failing
	quiet             int     // points left in the cooldown
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
		cfg:        cfg,
		sqrtN:      math.Sqrt(float64(cfg.Consecutive)),
		season:     make([]float64, m),
		phaseScale: make([]float64, m),
		win:        make([]float64, cfg.Window),
		sorted:     make([]float64, 0, cfg.Window),
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
	if fallback {
		d.pushWindow(x)
	}

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
			// Seasonal indices from a running median of 5 (cyclic): one
			// noisy season would otherwise seed every index with its
			// noise, while a median keeps the pattern's edges.
			copy(d.phaseScale, d.season)
			for i := range d.season {
				d.season[i] = median5(d.phaseScale, i) - d.level
			}
			clear(d.phaseScale)
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
	scale := max(d.scale, d.phaseScale[idx])
	if !fallback {
		w := c.K*scale + 1e-9*math.Abs(f) + 1e-12
		r.Forecast, r.Lower, r.Upper = f, f-w, f+w
		r.Out = x < r.Lower || x > r.Upper
		// The shift test on the mean of the last Consecutive residuals.
		n := c.Consecutive
		if d.resN == n {
			d.resSum -= d.resRing[d.resPos]
		} else {
			d.resN++
		}
		d.resRing[d.resPos] = res
		d.resSum += res
		if d.resPos++; d.resPos == n {
			d.resPos = 0
		}
		shifted := d.resN == n && n > 1 && math.Abs(d.resSum) > w*d.sqrtN
		if shifted && !d.shifted && d.quiet == 0 && d.out < n {
			r.Alert = true
			r.Out = true
			d.alerts++
			d.quiet = c.Cooldown + 1
			d.out = n // the run counts as alerted
		}
		d.shifted = shifted
	}
	// Winsorise: clip the residual before it teaches the model (once the
	// warm-up has taught it what normal residuals are).
	if d.scaleSeeded && !fallback {
		if lim := c.Winsor * scale; res > lim || res < -lim {
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
	a := math.Abs(res)
	if !d.scaleSeeded {
		if a > 0 {
			d.scale, d.scaleSeeded = a, true
		}
	} else {
		d.scale += c.ResidualSmoothing * (a - d.scale)
	}
	if d.seasonal() && d.scaleSeeded {
		// Residuals are larger at some positions of the season (a ramp,
		// a busier hour): each position keeps its own scale, smoothed
		// like the seasonal index, and the band takes the larger one.
		if ps := d.phaseScale[idx]; ps == 0 {
			d.phaseScale[idx] = d.scale
		} else {
			d.phaseScale[idx] = ps + c.Gamma*(a-ps)
		}
	}
	d.n++
	return d.judge(r)
}

// median5 is the median of s[i-2..i+2], indices taken cyclically.
func median5(s []float64, i int) float64 {
	n := len(s)
	if n < 5 {
		return s[i]
	}
	var w [5]float64
	for k := range w {
		w[k] = s[((i+k-2)%n+n)%n]
	}
	for a := 1; a < 5; a++ {
		for b := a; b > 0 && w[b] < w[b-1]; b-- {
			w[b], w[b-1] = w[b-1], w[b]
		}
	}
	return w[2]
}

func (d *Detector) judge(r Result) Result {
	if d.quiet > 0 {
		d.quiet--
	}
	if !r.Out {
		d.out = 0
		return r
	}
	if r.Alert { // the shift test fired
		return r
	}
	d.out++
	if d.out == d.cfg.Consecutive && d.quiet == 0 {
		d.quiet = d.cfg.Cooldown
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
