package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/conntest"
)

func decodeObserve(t *testing.T, y string) (Config, error) {
	t.Helper()
	cfg, err := gateway.ParseConfig([]byte(y), "gw.yaml")
	if err != nil {
		t.Fatalf("gateway config: %v", err)
	}
	return DecodeConfig(cfg.Observe)
}

func TestSLOConfigDecode(t *testing.T) {
	c, err := decodeObserve(t, `
observe:
  slos:
    - name: throughput
      series: throughput
      interval: 5m
      season: 24h
      k: 3
      consecutive: 4
      objective: 0.95
    - name: p99
      series: {instrument: gateway.publish.latency, attributes: {sink: up}, quantile: 0.9}
`)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SLOs) != 2 || c.SLOs[0].Season != 24*time.Hour || c.SLOs[0].K != 3 || c.SLOs[0].Series.Kind != "throughput" ||
		c.SLOs[1].Series.Instrument != "gateway.publish.latency" || c.SLOs[1].Series.Attributes["sink"] != "up" {
		t.Fatalf("decoded %+v", c)
	}
	if dc := c.SLOs[0].detectorConfig(); dc.Season != 288 || dc.Consecutive != 4 {
		t.Fatalf("detector config %+v", dc)
	}
}

// TestSLOConfigErrorsNameTheField: each invalid field is reported with its
// YAML path and position.
func TestSLOConfigErrorsNameTheField(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"observe:\n  slos:\n    - name: a\n      series: throughput\n      k: -1\n", "observe.slos[0].k: "},
		{"observe:\n  slos:\n    - name: a\n      series: bogus\n", "observe.slos[0].series: unknown series \"bogus\""},
		{"observe:\n  slos:\n    - name: a\n      series: throughput\n      interval: 1m\n      season: 90s\n", "observe.slos[0].season: "},
		{"observe:\n  slos:\n    - series: throughput\n", "observe.slos[0].name: must not be empty"},
		{"observe:\n  slos:\n    - name: a\n      series: throughput\n      objective: 2\n", "observe.slos[0].objective: "},
		{"observe:\n  slos:\n    - name: a\n      series: throughput\n      consecutive: 0.5\n", "observe.slos[0].consecutive: want an integer"},
		{"observe:\n  slos:\n    - name: a\n      series: throughput\n      colour: red\n", "observe.slos[0].colour: unknown key"},
		{"observe:\n  slos:\n    - name: a\n      series: {instrument: x, quantile: 1.5}\n", "observe.slos[0].series: quantile"},
		{"observe:\n  slo: []\n", "observe.slo: unknown key"},
		{"observe:\n  slos:\n    - name: a\n    - name: b\n      series: throughput\n      alpha: 1\n", "observe.slos[1].alpha: "},
	} {
		_, err := decodeObserve(t, c.yaml)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant an error containing %q", c.yaml, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), "(gw.yaml:") {
			t.Errorf("%q: error without position: %v", c.yaml, err)
		}
	}
}

// TestSLOAlertReachesEverySink: an alert is a log line, a metric, a /statz
// entry and a callback.
func TestSLOAlertReachesEverySink(t *testing.T) {
	var logs bytes.Buffer
	got := make(chan Alert, 4)
	r := runObserved(t, WithLogger(slog.New(NewLogHandler(&logs, nil))), WithAlertFunc(func(a Alert) { got <- a }))
	slo := SLO{Name: "temp", Series: Series{Kind: "queue_depth"}, Consecutive: 3}
	if err := r.obs.SLOs().Declare(slo); err != nil {
		t.Fatal(err)
	}
	if err := r.obs.SLOs().Declare(slo); err == nil {
		t.Fatal("a second SLO of the same name was accepted")
	}
	removed := false
	remove := r.obs.SLOs().OnAlert(func(Alert) { removed = true })
	remove()
	now := time.Unix(1700000000, 0)
	for i := 0; i < 200; i++ {
		v := 10 + float64(i%7)*0.1
		if _, err := r.obs.SLOs().Feed("temp", v, now.Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case a := <-got:
		t.Fatalf("alert on a steady series: %+v", a)
	default:
	}
	var alert Alert
	for i := 0; i < 5; i++ {
		res, _ := r.obs.SLOs().Feed("temp", 500, now.Add(time.Duration(200+i)*time.Minute))
		if res.Alert {
			alert = <-got
			break
		}
	}
	if alert.SLO != "temp" || alert.Value != 500 || alert.Upper >= 500 {
		t.Fatalf("alert %+v", alert)
	}
	if removed {
		t.Fatal("a removed callback was called")
	}
	if !strings.Contains(logs.String(), `"msg":"slo alert"`) || !strings.Contains(logs.String(), `"decision":"alert"`) {
		t.Fatalf("no alert log line: %s", logs.String())
	}
	if expo := scrape(t, r.url); !strings.Contains(expo, `observe_slo_alerts_total{slo="temp"} 1`) {
		t.Fatalf("no alert metric:\n%s", expo)
	}
	resp, err := http.Get(r.url + "/statz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Reports struct {
			SLO []SLOStatus `json:"slo"`
		} `json:"reports"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	if len(st.Reports.SLO) != 1 || st.Reports.SLO[0].Alerts != 1 || st.Reports.SLO[0].Name != "temp" {
		t.Fatalf("/statz slo section: %+v", st.Reports.SLO)
	}
}

// TestSLOSamplesInstruments: an SLO added with Add samples the gateway's
// own instruments on its interval.
func TestSLOSamplesInstruments(t *testing.T) {
	r := runObserved(t, WithSLOs(SLO{Name: "tp", Series: Series{Kind: "throughput"}, Interval: 20 * time.Millisecond}))
	r.inject(t, 10, func(int) string { return "d" })
	conntest.Eventually(t, 5*time.Second, "the SLO to take points", func() bool {
		st := r.obs.SLOs().Status()
		return len(st) == 1 && st[0].Points >= 3 && st[0].LastErr == ""
	})
	// A series that does not exist reports an error in /statz.
	if err := r.obs.SLOs().Add(SLO{Name: "missing", Series: Series{Instrument: "no.such"}, Interval: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	conntest.Eventually(t, 5*time.Second, "the error to show", func() bool {
		for _, s := range r.obs.SLOs().Status() {
			if s.Name == "missing" && strings.Contains(s.LastErr, "no.such") {
				return true
			}
		}
		return false
	})
}

func TestHistogramQuantile(t *testing.T) {
	bounds := []float64{1, 2, 4}
	if v, ok := histogramQuantile(0.5, bounds, []uint64{0, 10, 0, 0}); !ok || v != 1.5 {
		t.Fatalf("median %v %v", v, ok)
	}
	if v, ok := histogramQuantile(0.99, bounds, []uint64{0, 0, 0, 5}); !ok || v != 4 {
		t.Fatalf("open bucket %v %v", v, ok)
	}
	if _, ok := histogramQuantile(0.5, bounds, []uint64{0, 0, 0, 0}); ok {
		t.Fatal("empty histogram gave a quantile")
	}
	_ = context.Background()
}

// FuzzDecodeConfig: any observe: section either decodes into valid SLOs or
// fails with an error naming a path under observe; it never panics.
func FuzzDecodeConfig(f *testing.F) {
	f.Add("slos:\n  - name: a\n    series: throughput\n    k: 3\n")
	f.Add("slos:\n  - name: a\n    series: {instrument: x, quantile: 0.5}\n    season: 1h\n    interval: 1m\n")
	f.Add("slos: [{name: b, series: bogus, consecutive: -1}]\n")
	f.Fuzz(func(t *testing.T, body string) {
		var b strings.Builder
		b.WriteString("observe:\n")
		for _, l := range strings.Split(body, "\n") {
			b.WriteString("  " + l + "\n")
		}
		cfg, err := gateway.ParseConfig([]byte(b.String()), "f.yaml")
		if err != nil {
			return
		}
		c, err := DecodeConfig(cfg.Observe)
		if err != nil {
			if !strings.Contains(err.Error(), "observe") {
				t.Fatalf("error without its path: %v", err)
			}
			return
		}
		for _, s := range c.SLOs {
			if err := s.Validate(); err != nil {
				t.Fatalf("decoded an invalid SLO %+v: %v", s, err)
			}
			if _, err := NewDetector(s.detectorConfig()); err != nil {
				t.Fatalf("valid SLO, invalid detector: %v", err)
			}
		}
	})
}
