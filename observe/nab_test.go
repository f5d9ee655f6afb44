package observe

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway/internal/testenv"
)

// The NAB data set lives beside the repository, in ../shared/data/nab.
func nabDir(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test")
		}
		dir = parent
	}
	nab := filepath.Join(dir, "..", "shared", "data", "nab")
	if _, err := os.Stat(filepath.Join(nab, "windows.json")); err != nil {
		testenv.Skip(t, "the NAB data set is not at ../shared/data/nab")
	}
	return nab
}

type nabFile struct {
	name    string // e.g. realKnownCause/nyc_taxi.csv
	times   []time.Time
	values  []float64
	windows [][2]time.Time
}

const nabLayout = "2006-01-02 15:04:05"

func loadNAB(t testing.TB) []nabFile {
	t.Helper()
	dir := nabDir(t)
	raw, err := os.ReadFile(filepath.Join(dir, "windows.json"))
	if err != nil {
		t.Fatal(err)
	}
	var wins map[string][][2]string
	if err := json.Unmarshal(raw, &wins); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(wins))
	for n := range wins {
		names = append(names, n)
	}
	sort.Strings(names)
	var files []nabFile
	for _, name := range names {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		nf := nabFile{name: name}
		for _, r := range rows[1:] {
			ts, err := time.Parse(nabLayout, r[0])
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			v, err := strconv.ParseFloat(r[1], 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			nf.times = append(nf.times, ts)
			nf.values = append(nf.values, v)
		}
		for _, w := range wins[name] {
			a, err1 := time.Parse(nabLayout, strings.TrimSuffix(w[0], ".000000"))
			b, err2 := time.Parse(nabLayout, strings.TrimSuffix(w[1], ".000000"))
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: window %v", name, w)
			}
			nf.windows = append(nf.windows, [2]time.Time{a, b})
		}
		files = append(files, nf)
	}
	if len(files) == 0 {
		t.Fatal("no NAB files")
	}
	return files
}

// season is one day in points (the median sampling interval).
func (f nabFile) season() int {
	ds := make([]time.Duration, 0, len(f.times))
	for i := 1; i < len(f.times); i++ {
		ds = append(ds, f.times[i].Sub(f.times[i-1]))
	}
	slices.Sort(ds)
	med := ds[len(ds)/2]
	return int(math.Round(float64(24*time.Hour) / float64(med)))
}

// detect runs a detector with the NAB defaults over f and returns the row
// indices of its alerts.
func (f nabFile) detect(cfg DetectorConfig) []int {
	cfg.Season = f.season()
	d, err := NewDetector(cfg)
	if err != nil {
		panic(err)
	}
	var alerts []int
	for i, v := range f.values {
		if d.Update(v).Alert {
			alerts = append(alerts, i)
		}
	}
	return alerts
}

// NAB's standard profile.
const (
	nabTP = 1.0
	nabFP = 0.11
	nabFN = 1.0
)

func scaledSigmoid(x float64) float64 {
	if x > 3 {
		return -1
	}
	return 2/(1+math.Exp(5*x)) - 1
}

// nabScore scores detections (row indices) on f as NAB's sweeper does with
// the standard profile: inside a window the first detection earns
// scaledSigmoid of its position (earlier is better), a window without one
// costs nabFN, a detection outside every window costs nabFP scaled by its
// distance past the previous window (the full cost before any window), and
// detections in the probationary period (15 % of the file, at most 750
// rows) are ignored. It returns the raw score and the perfect detector's.
func nabScore(f nabFile, det []int) (raw, perfect float64) {
	probation := min(int(math.Floor(0.15*float64(len(f.values)))), 750)
	type win struct{ lo, hi int }
	var ws []win
	for _, w := range f.windows {
		lo := sort.Search(len(f.times), func(i int) bool { return !f.times[i].Before(w[0]) })
		hi := sort.Search(len(f.times), func(i int) bool { return f.times[i].After(w[1]) }) - 1
		ws = append(ws, win{lo, hi})
	}
	isDet := map[int]bool{}
	for _, i := range det {
		if i >= probation {
			isDet[i] = true
		}
	}
	for _, w := range ws {
		width := float64(w.hi - w.lo + 1)
		perfect += scaledSigmoid(-(float64(w.hi-w.lo)+1)/width) * nabTP
		hit := false
		for i := w.lo; i <= w.hi; i++ {
			if isDet[i] {
				raw += scaledSigmoid(-float64(w.hi-i+1)/width) * nabTP
				hit = true
				break
			}
		}
		if !hit {
			raw -= nabFN
		}
	}
	for i := range isDet {
		inside, prev := false, -1
		for k, w := range ws {
			if i >= w.lo && i <= w.hi {
				inside = true
				break
			}
			if i > w.hi {
				prev = k
			}
		}
		if inside {
			continue
		}
		if prev < 0 {
			raw -= nabFP
			continue
		}
		w := ws[prev]
		pos := math.Abs(float64(w.hi-i)) / float64(w.hi-w.lo)
		raw += scaledSigmoid(pos) * nabFP
	}
	return raw, perfect
}

// nabDefaults is the detector configuration the NAB tests use: the
// package defaults.
var nabDefaults = DetectorConfig{}

// TestNABFalseAlertsWithoutAnomalies: on the NAB series without
// anomalies, at most one false alert per series per week.
func TestNABFalseAlertsWithoutAnomalies(t *testing.T) {
	for _, f := range loadNAB(t) {
		if !strings.HasPrefix(f.name, "artificialNoAnomaly/") {
			continue
		}
		alerts := f.detect(nabDefaults)
		// The file covers its rows' span plus the last row's interval.
		span := f.times[len(f.times)-1].Sub(f.times[0]) + 24*time.Hour/time.Duration(f.season())
		weeks := span.Hours() / (24 * 7)
		rate := float64(len(alerts)) / weeks
		t.Logf("%s: %d alerts in %.1f weeks (%.2f/week)", f.name, len(alerts), weeks, rate)
		if rate > 1 {
			t.Errorf("%s: %.2f false alerts per week, want ≤ 1 (at rows %v)", f.name, rate, alerts)
		}
	}
}

// TestNABScore reports NAB's standard score of the detector over the
// provided series; it must beat the null detector (score 0) by a margin.
func TestNABScore(t *testing.T) {
	score, detail := nabRun(t, nabDefaults)
	for _, l := range detail {
		t.Log(l)
	}
	t.Logf("NAB standard score: %.1f", score)
	if score < 25 {
		t.Fatalf("NAB standard score %.1f, want ≥ 25", score)
	}
}

func nabRun(t testing.TB, cfg DetectorConfig) (float64, []string) {
	var raw, perfect, null float64
	var detail []string
	for _, f := range loadNAB(t) {
		det := f.detect(cfg)
		r, p := nabScore(f, det)
		raw += r
		perfect += p
		null -= nabFN * float64(len(f.windows))
		detail = append(detail, fmt.Sprintf("%-55s season %4d  windows %d  alerts %3d  raw %+.3f", f.name, f.season(), len(f.windows), len(det), r))
	}
	return 100 * (raw - null) / (perfect - null), detail
}
