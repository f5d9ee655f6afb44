package observe

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/resume"
	"gopkg.in/yaml.v3"
)

func decodeTraceConfig(t *testing.T, src string) (*TraceConfig, error) {
	t.Helper()
	var c TraceConfig
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	err := dec.Decode(&c)
	return &c, err
}

func TestTraceConfig(t *testing.T) {
	srv := newOTLPServer(t)
	db := filepath.Join(t.TempDir(), "spool.db")
	c, err := decodeTraceConfig(t, "endpoint: "+srv.URL+"\nratio: 0.5\ntail: false\nlatency: 250ms\nqueue: 100\nbatch: 10\n"+
		"interval: 50ms\nservice_name: gw-7\nspool:\n  path: "+db+"\n  max_bytes: 1048576\n")
	if err != nil {
		t.Fatal(err)
	}
	open := func(path string, max int64) (gateway.Store, io.Closer, error) {
		st, err := resume.NewSQLiteStore(resume.SQLiteConfig{Path: path, MaxBytes: max, Overflow: resume.OverflowDropOldest})
		return st, st, err
	}
	opts, closer, err := c.Options("observe.traces", open, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTracing(context.Background(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if ts := tr.s.sampling; ts.Ratio != 0.5 || ts.Tail || ts.Latency.Milliseconds() != 250 {
		t.Fatalf("sampling %+v", ts)
	}
	if tr.s.queue != 100 || tr.s.batch != 10 || tr.s.service != "gw-7" || tr.Spool() == nil {
		t.Fatalf("settings %+v", tr.s)
	}
	_ = tr.Shutdown(context.Background())
	if err := closer.Close(); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct{ src, want string }{
		{"ratio: 1.5\n", "observe.traces.ratio"},
		{"latency: -1s\n", "observe.traces.latency"},
		{"endpoint: collector:4318\n", "observe.traces.endpoint"},
		{"queue: 10\nbatch: 20\n", "observe.traces.batch"},
		{"spool: {path: /tmp/x.db}\n", "observe.traces.spool: needs observe.traces.endpoint"},
		{"endpoint: http://c:4318\nspool: {max_bytes: 5}\n", "observe.traces.spool.path"},
	} {
		cfg, err := decodeTraceConfig(t, c.src)
		if err != nil {
			t.Fatalf("%q: %v", c.src, err)
		}
		if _, _, err := cfg.Options("observe.traces", nil, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want one naming %s", c.src, err, c.want)
		}
	}
	if _, err := decodeTraceConfig(t, "ratoi: 0.1\n"); err == nil {
		t.Error("unknown key accepted")
	}
}
