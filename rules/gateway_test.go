package rules

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

// TestGatewayConfigReload loads rule files through rules.enabled and
// checks that a reload with a bad rule file is rejected, naming the rule,
// while the running rules keep routing.
func TestGatewayConfigReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "route.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("rules: [{name: v1, topic: 'v1/{device}', sinks: [rec]}]\n")
	cfg, err := gateway.ParseConfig([]byte("rules:\n  enabled: true\n  dir: "+dir+"\n"), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := gateway.NewRegistry()
	Register(reg, Options{Sinks: []string{"rec"}})
	rec := &recordingSink{}
	g, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg), gateway.WithSink("rec", rec),
		gateway.WithLogger(slog.New(slog.DiscardHandler)))
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
	waitSeen("v1/d1")

	write("rules: [{name: v2, when: 'nosuch > 1', sinks: [rec]}]\n")
	err = g.ApplyConfig(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), `route.yaml:1: rule "v2"`) || !strings.Contains(err.Error(), "unknown name nosuch") {
		t.Fatalf("reload with a bad rule: %v", err)
	}
	inject("d2")
	waitSeen("v1/d2")

	write("rules: [{name: v3, topic: 'v3/{device}', sinks: [rec]}]\n")
	if err := g.ApplyConfig(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	inject("d3")
	waitSeen("v3/d3")
}
