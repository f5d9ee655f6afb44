package rego

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

const exampleDir = "../../examples/rego/rules"

func msg(topic, site string, temp float64) *gateway.Message {
	m := &gateway.Message{Device: "plc-1", Topic: topic, Connector: "modbus", Priority: gateway.PriorityNormal, QoS: 1}
	if site != "" {
		m.Tags = m.Tags.Set("site", site)
	}
	m.AddPoint("temperature", gateway.Float(temp), "C")
	m.AddPoint("state", gateway.String("run"), "")
	m.AddPoint("count", gateway.Int(3), "")
	return m
}

// TestExamplePolicy checks the documented example policy does what its
// comments say.
func TestExamplePolicy(t *testing.T) {
	p, err := Load(exampleDir, Options{Sinks: []string{"cloud", "alarms"}})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		m        *gateway.Message
		sinks    []string
		topic    string
		priority gateway.Priority
	}{
		{"normal reading", msg("env", "A", 21), []string{"alarms", "cloud"}[1:], "plant/A/plc-1/env", gateway.PriorityNormal},
		{"alarm", msg("env", "B", 85), []string{"alarms", "cloud"}, "plant/B/plc-1/env", 7},
		{"no site tag", msg("env", "", 20), []string{"cloud"}, "plant/unknown/plc-1/env", gateway.PriorityNormal},
		{"test site dropped", msg("env", "test", 99), nil, "env", gateway.PriorityNormal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := p.Route(c.m, nil)
			slices.Sort(got)
			if !slices.Equal(got, c.sinks) {
				t.Fatalf("sinks = %v, want %v (policy errors %d: %s)", got, c.sinks, p.Errors(), p.LastError())
			}
			if c.m.Topic != c.topic || c.m.Priority != c.priority {
				t.Fatalf("topic %q priority %d, want %q %d", c.m.Topic, c.m.Priority, c.topic, c.priority)
			}
			if got != nil {
				if v, _ := c.m.Tags.Get("routed_by"); v != "rego" {
					t.Fatalf("routed_by tag = %q", v)
				}
			}
		})
	}
	if p.Drops() != 1 || p.Errors() != 0 {
		t.Fatalf("drops %d errors %d (%s)", p.Drops(), p.Errors(), p.LastError())
	}
}

func writeFile(t *testing.T, path, src string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

const goodPolicy = `package gateway

decision := {"sinks": ["cloud"]}
`

func TestBrokenPolicyRejectedAndOldKeepsRunning(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.rego"), goodPolicy)
	eng, err := NewEngine(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, src string
		want      []string
	}{
		{"syntax", "package gateway\n\ndecision := {\"sinks\": [\"cloud\"]\n\nx := 1 +\n", []string{"b.rego:", "rego_parse_error"}},
		{"unsafe variable", "package gateway\n\ndecision := {\"sinks\": [s]} if {\n\tinput.device == \"x\"\n}\n", []string{"b.rego:3:", "rego_unsafe_var_error", "var s is unsafe"}},
		{"type error", "package gateway\n\ndecision := {\"sinks\": [\"cloud\"]} if {\n\tcount(1) > 0\n}\n", []string{"b.rego:4:", "rego_type_error"}},
		{"no decision", "package other\n\nallow := true\n", []string{"no rule \"decision\""}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "no decision" {
				_ = os.Remove(filepath.Join(dir, "a.rego"))
				defer writeFile(t, filepath.Join(dir, "a.rego"), goodPolicy)
			}
			writeFile(t, filepath.Join(dir, "b.rego"), c.src)
			err := eng.Reload()
			if err == nil {
				t.Fatal("broken policy accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
			if got := eng.Route(msg("env", "A", 1), nil); !slices.Equal(got, []string{"cloud"}) {
				t.Fatalf("previous policy not running: %v", got)
			}
		})
	}
	if eng.Generation() != 1 {
		t.Fatalf("generation %d after only rejected reloads", eng.Generation())
	}
}

func TestRunTimeErrorsCountedNotFatal(t *testing.T) {
	p, err := Compile(map[string]string{"p.rego": `package gateway

# Two complete definitions that disagree for hot readings: a conflict.
decision := {"sinks": ["cloud"]} if input.points.temperature > 50
decision := {"sinks": ["alarms"]} if input.points.temperature > 80

# A malformed decision for one device.
decision := {"sinks": ["cloud"], "qos": 5} if input.device == "bad"
`}, Options{Sinks: []string{"cloud", "alarms"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := p.Route(msg("t", "", 90), nil); got != nil {
		t.Fatalf("conflicting decision routed to %v", got)
	}
	if p.Errors() != 1 || !strings.Contains(p.LastError(), "conflict") {
		t.Fatalf("errors %d: %s", p.Errors(), p.LastError())
	}
	bad := msg("t", "", 1)
	bad.Device = "bad"
	if got := p.Route(bad, nil); got != nil || p.Errors() != 2 || !strings.Contains(p.LastError(), "qos") {
		t.Fatalf("malformed decision: sinks %v errors %d %s", got, p.Errors(), p.LastError())
	}
	if bad.QoS != 1 {
		t.Fatal("a rejected decision changed the message")
	}
	if got := p.Route(msg("t", "", 60), nil); !slices.Equal(got, []string{"cloud"}) {
		t.Fatalf("after errors: %v", got)
	}
}

// recordingSink keeps what it is given.
type recordingSink struct {
	mu     sync.Mutex
	topics []string
}

func (s *recordingSink) Publish(_ context.Context, msgs []*gateway.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range msgs {
		s.topics = append(s.topics, m.Topic)
	}
	return nil
}

func (s *recordingSink) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.topics...)
}

// TestGatewayConfigReload drives the policy through the gateway's YAML:
// rules.enabled loads the policy, and a reload with a broken policy is
// rejected while the running one keeps routing.
func TestGatewayConfigReload(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "route.rego"), `package gateway

decision := {"sinks": ["rec"], "topic": concat("/", ["up", input.device])}
`)
	cfg, err := gateway.ParseConfig([]byte("rules:\n  enabled: true\n  dir: "+dir+"\n"), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := gateway.NewRegistry()
	Register(reg, Options{Sinks: []string{"rec"}})
	rec := &recordingSink{}
	g, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg), gateway.WithSink("rec", rec),
		gateway.WithLogger(discard()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() { cancel(); <-done }()
	inject := func(dev string) {
		f := gateway.AcquireFrame()
		f.Device, f.Topic = dev, "env"
		f.Payload = append(f.Payload, 1)
		if err := g.Inject(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	waitSeen := func(want string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !slices.Contains(rec.seen(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("sink never got %q; got %v", want, rec.seen())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	inject("d1")
	waitSeen("up/d1")

	writeFile(t, filepath.Join(dir, "route.rego"), "package gateway\n\ndecision := {\n")
	err = g.ApplyConfig(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "route.rego:") || !strings.Contains(err.Error(), "rego_parse_error") {
		t.Fatalf("reload with a broken policy: %v", err)
	}
	inject("d2")
	waitSeen("up/d2")

	writeFile(t, filepath.Join(dir, "route.rego"), `package gateway

decision := {"sinks": ["rec"], "topic": concat("/", ["v2", input.device])}
`)
	if err := g.ApplyConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	inject("d3")
	waitSeen("v2/d3")

}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
