package observe

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/iotgw/gateway/internal/testenv"
)

// goldenSeries is a trend, a wave and some deterministic noise.
func goldenSeries(n int) []float64 {
	r := rand.New(rand.NewPCG(1, 2))
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = 100 + 0.37*float64(i) + 5*math.Sin(float64(i)/4) + r.NormFloat64()
	}
	return xs
}

// TestDetectorMatchesPromQLHoltWinters is the golden test: without a
// season, the detector's level and trend follow PromQL's holt_winters
// exactly. promtool test rules evaluates holt_winters over every prefix of
// a series; the level is its result, and the trend applied at point i is
// recovered from two consecutive levels: b_i = (s_i − α·x_i)/(1−α) − s_{i−1}.
func TestDetectorMatchesPromQLHoltWinters(t *testing.T) {
	promtool := testenv.RequireCommand(t, "promtool")
	const n, sf, tf = 60, 0.3, 0.1
	xs := goldenSeries(n)
	var vals []string
	for _, x := range xs {
		vals = append(vals, strconv.FormatFloat(x, 'g', -1, 64))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "evaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n      - series: 'x'\n        values: '%s'\n    promql_expr_test:\n", strings.Join(vals, " "))
	for i := 1; i < n; i++ {
		// exp 0 never matches: promtool prints what it got, in full precision.
		fmt.Fprintf(&b, "      - expr: holt_winters(x[1d], %v, %v)\n        eval_time: %dm\n        exp_samples:\n          - labels: '{}'\n            value: 0\n", sf, tf, i)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "hw_test.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command(promtool, "test", "rules", file).CombinedOutput()
	re := regexp.MustCompile(`time: (\d+)m,\s+exp: \{\} \S+\s+got: \{\} (\S+)`)
	level := make([]float64, n)
	got := 0
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		i, _ := strconv.Atoi(m[1])
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("promtool value %q: %v", m[2], err)
		}
		level[i] = v
		got++
	}
	if got != n-1 {
		t.Fatalf("parsed %d of %d holt_winters values from promtool:\n%s", got, n-1, out)
	}
	level[0] = xs[0]

	d, err := NewDetector(DetectorConfig{Alpha: sf, Beta: tf, Winsor: 1e9})
	if err != nil {
		t.Fatal(err)
	}
	var worstL, worstB float64
	for i, x := range xs {
		d.Update(x)
		if i == 0 {
			continue
		}
		if e := math.Abs(d.Level() - level[i]); e > worstL {
			worstL = e
		}
		if e := math.Abs(d.Level() - level[i]); e > 1e-9 {
			t.Fatalf("point %d: level %.15g, holt_winters %.15g", i, d.Level(), level[i])
		}
		trend := (level[i]-sf*x)/(1-sf) - level[i-1]
		if e := math.Abs(d.Trend() - trend); e > worstB {
			worstB = e
		}
		if e := math.Abs(d.Trend() - trend); e > 1e-9 {
			t.Fatalf("point %d: trend %.15g, from holt_winters %.15g", i, d.Trend(), trend)
		}
	}
	t.Logf("%d points: max |level - holt_winters| = %.3g, max |trend - derived| = %.3g", n, worstL, worstB)
	// With the default winsorising the same smooth series is unchanged
	// (nothing is clipped), so the detector as configured agrees too.
	d2, _ := NewDetector(DetectorConfig{Alpha: sf, Beta: tf})
	for _, x := range xs {
		d2.Update(x)
	}
	if d2.Clipped() == 0 && math.Abs(d2.Level()-level[n-1]) > 1e-9 {
		t.Fatalf("default detector level %v, holt_winters %v", d2.Level(), level[n-1])
	}
}

func TestDetectorConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg   DetectorConfig
		field string
	}{
		{DetectorConfig{Alpha: 1.5}, "alpha"},
		{DetectorConfig{Beta: -0.1}, "beta"},
		{DetectorConfig{Gamma: 1}, "gamma"},
		{DetectorConfig{K: -1}, "k"},
		{DetectorConfig{K: math.Inf(1)}, "k"},
		{DetectorConfig{Season: -2}, "season"},
		{DetectorConfig{Consecutive: -1}, "consecutive"},
		{DetectorConfig{Window: 2}, "window"},
		{DetectorConfig{ResidualSmoothing: 2}, "residual_smoothing"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), c.field+":") {
			t.Errorf("%+v: error %v, want one naming %s", c.cfg, err, c.field)
		}
	}
	if err := (DetectorConfig{}).Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

// seasonal returns a daily-like wave of period season with Gaussian noise
// of σ = sigma.
func seasonal(r *rand.Rand, n, season int, sigma float64) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = 50 + 20*math.Sin(2*math.Pi*float64(i)/float64(season)) + sigma*r.NormFloat64()
	}
	return xs
}

// stepDelays runs the detector (defaults, season 0) over stationary
// Gaussian noise with a +4σ step after 20 warm days' worth of points, for
// seeds draws, and returns each draw's detection delay in intervals (the
// step's own point is interval 1; -1: never detected).
func stepDelays(seeds int) []int {
	var out []int
	for seed := uint64(0); seed < uint64(seeds); seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		xs := make([]float64, 1200)
		for i := range xs {
			xs[i] = 50 + r.NormFloat64()
		}
		const step = 960
		for i := step; i < len(xs); i++ {
			xs[i] += 4
		}
		d, _ := NewDetector(DetectorConfig{})
		delay := -1
		for i, x := range xs {
			if d.Update(x).Alert && i >= step {
				delay = i - step + 1
				break
			}
		}
		out = append(out, delay)
	}
	return out
}

// TestDetectorStepDelay: a 4σ step is alerted within 3 intervals: in the
// median draw and in at least 90 % of 40 draws.
func TestDetectorStepDelay(t *testing.T) {
	delays := stepDelays(40)
	within := 0
	for _, d := range delays {
		if d >= 1 && d <= 3 {
			within++
		}
	}
	sorted := slices.Clone(delays)
	for i, d := range sorted {
		if d < 0 {
			sorted[i] = math.MaxInt
		}
	}
	slices.Sort(sorted)
	t.Logf("4σ step: %d/40 detected within 3 intervals, median delay %d; delays %v", within, sorted[len(sorted)/2], delays)
	if med := sorted[len(sorted)/2]; med > 3 {
		t.Fatalf("median detection delay %d intervals, want ≤ 3", med)
	}
	if within < 36 {
		t.Fatalf("%d/40 draws detected within 3 intervals, want ≥ 36", within)
	}
}

// TestDetectorWinsorised: an anomaly does not teach the model: after a
// burst of outliers the forecast stays near the pattern.
func TestDetectorWinsorised(t *testing.T) {
	const season = 24
	r := rand.New(rand.NewPCG(3, 4))
	xs := seasonal(r, 6*season, season, 0.5)
	d, _ := NewDetector(DetectorConfig{Season: season})
	for _, x := range xs[:4*season] {
		d.Update(x)
	}
	for i := 0; i < 5; i++ {
		d.Update(1e6)
	}
	if d.Clipped() < 5 {
		t.Fatalf("clipped %d residuals, want ≥ 5", d.Clipped())
	}
	res := d.Update(xs[4*season+5])
	if math.Abs(res.Forecast-xs[4*season+5]) > 10 {
		t.Fatalf("forecast %v after outliers, point %v: the anomaly taught the model", res.Forecast, xs[4*season+5])
	}
}

// TestDetectorWarmUpFallback: before two seasons the rolling-quantile band
// judges points, and a gross outlier there still alerts.
func TestDetectorWarmUpFallback(t *testing.T) {
	const season = 20
	d, _ := NewDetector(DetectorConfig{Season: season, Consecutive: 1, Cooldown: -1})
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < season+season/2; i++ {
		res := d.Update(10 + r.NormFloat64())
		if i >= season && (!res.WarmingUp || res.Upper <= res.Lower) {
			t.Fatalf("point %d: %+v, want a warm-up band", i, res)
		}
		if res.Alert {
			t.Fatalf("point %d: false alert during warm-up: %+v", i, res)
		}
	}
	if res := d.Update(1000); !res.Alert || !res.WarmingUp {
		t.Fatalf("outlier during warm-up: %+v", res)
	}
}

func TestDetectorIgnoresNaN(t *testing.T) {
	d, _ := NewDetector(DetectorConfig{})
	d.Update(1)
	d.Update(2)
	if r := d.Update(math.NaN()); r != (Result{}) || d.Level() != 2 {
		t.Fatalf("NaN changed the model: %+v level %v", r, d.Level())
	}
}

// TestDetectorNoAlloc: Update allocates nothing, warm or not.
func TestDetectorNoAlloc(t *testing.T) {
	d, _ := NewDetector(DetectorConfig{Season: 288})
	r := rand.New(rand.NewPCG(1, 1))
	xs := seasonal(r, 4096, 288, 1)
	i := 0
	if n := testing.AllocsPerRun(4000, func() { d.Update(xs[i%len(xs)]); i++ }); n != 0 {
		t.Fatalf("%v allocs per Update", n)
	}
}

func BenchmarkDetectorUpdate(b *testing.B) {
	for _, season := range []int{0, 288} {
		b.Run(fmt.Sprintf("season=%d", season), func(b *testing.B) {
			d, _ := NewDetector(DetectorConfig{Season: season})
			r := rand.New(rand.NewPCG(1, 1))
			xs := seasonal(r, 4096, 288, 1)
			for _, x := range xs[:3*288] { // past the warm-up
				d.Update(x)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				d.Update(xs[i&4095])
				i++
			}
		})
	}
}

func BenchmarkDetectorWarmUp(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	xs := seasonal(r, 4096, 288, 1)
	b.ReportAllocs()
	var d *Detector
	i := 0
	for b.Loop() {
		if i%(2*288) == 0 {
			b.StopTimer()
			d, _ = NewDetector(DetectorConfig{Season: 288})
			b.StartTimer()
		}
		d.Update(xs[i&4095])
		i++
	}
}

// TestDetectorExactStart: a series whose first points are exactly linear
// (residual 0, then rounding noise) must not seed a near-zero scale that
// winsorising then never lets grow: a steady repeating series raises no
// alert.
func TestDetectorExactStart(t *testing.T) {
	d, _ := NewDetector(DetectorConfig{Consecutive: 3})
	for i := 0; i < 300; i++ {
		if r := d.Update(10 + float64(i%7)*0.1); r.Alert {
			t.Fatalf("point %d: alert on a steady series: %+v (level %v)", i, r, d.Level())
		}
	}
}
