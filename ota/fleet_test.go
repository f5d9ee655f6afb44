package ota

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotgw/gateway/internal/testenv"
	"github.com/iotgw/gateway/ota/rollout"
)

// healthByContent is the simulated gateways' health: a generation whose
// configuration says "bad" degrades.
type healthByContent struct{}

func (healthByContent) Probe(_ context.Context, g *Generation) error {
	b, err := os.ReadFile(g.Path(ConfigFile))
	if err != nil {
		return err
	}
	if strings.Contains(string(b), "bad") {
		return fmt.Errorf("publish errors jumped")
	}
	return nil
}

// TestFleetRollout runs a fleet of gateways (200 by default, 50 with
// -short; OTA_FLEET=N) in this process, each an Updater with its own MQTT
// channel to a real mosquitto, and a rollout service driving them with
// the rollout policy through retained desired documents and reported
// documents. A good bundle reaches every gateway; a bad one is aborted
// after the canary group, whose gateways roll back by themselves.
func TestFleetRollout(t *testing.T) {
	n := 200
	if testing.Short() && !testenv.InCI() {
		n = 50
	}
	if v, err := strconv.Atoi(os.Getenv("OTA_FLEET")); err == nil && v > 0 {
		n = v
	}
	b := startBroker(t)
	k := newKeyring(t, "fleet")
	tmp := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	opts := func(id string) *paho.ClientOptions {
		return paho.NewClientOptions().AddBroker("tcp://" + b.addr).SetClientID(id).SetUsername(brokerUser).SetPassword(brokerPass)
	}
	names := make([]string, n)
	updaters := make([]*Updater, n)
	for i := range names {
		names[i] = fmt.Sprintf("gw-%03d", i)
		ch, err := NewMQTTChannel(opts("sim-"+names[i]), "", names[i], "fleet")
		if err != nil {
			t.Fatal(err)
		}
		defer ch.Close()
		u, err := New(filepath.Join(tmp, names[i]), k.trust(1), &fakeApplier{}, WithTarget(names[i], nil),
			WithProbation(300*time.Millisecond, 20*time.Millisecond), WithHooks(healthByContent{}), WithReport(ch.Report))
		if err != nil {
			t.Fatal(err)
		}
		updaters[i] = u
		wg.Add(1)
		go func() { defer wg.Done(); _ = u.Run(ctx, time.Hour, ch) }()
	}

	// The rollout service.
	svc := paho.NewClient(opts("rollout-service"))
	if tok := svc.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer svc.Disconnect(50)
	var mu sync.Mutex
	var current *rollout.Rollout
	var version uint64
	progress := make(chan struct{}, 1)
	tok := svc.Subscribe("iotgw/ota/+/reported", 1, func(_ paho.Client, m paho.Message) {
		var r Reported
		if json.Unmarshal(m.Payload(), &r) != nil {
			return
		}
		mu.Lock()
		ro, v := current, version
		mu.Unlock()
		if ro == nil || r.Offered != v {
			return
		}
		switch {
		case r.State == Committed && r.Version == v:
			ro.Report(r.Gateway, true)
		case r.State == RolledBack || r.State == Failed:
			ro.Report(r.Gateway, false)
		default:
			return
		}
		select {
		case progress <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	policy := rollout.Policy{Canary: 5, BaseRate: 10, Factor: 2, AbortPercent: 20}
	roll := func(v uint64, cfg string) (*rollout.Rollout, time.Duration) {
		files := map[string]string{ConfigFile: cfg}
		m := manifest(v, files)
		m.Created, m.Expires = time.Now().Add(-time.Minute), time.Now().Add(time.Hour)
		doc, _ := json.Marshal(Desired{Version: v, Bundle: bundle(t, m, files, k.skeys...)})
		ro, err := rollout.New(policy, names)
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		current, version = ro, v
		mu.Unlock()
		start := time.Now()
		deadline := time.After(60 * time.Second)
		for !ro.Finished() {
			for _, gw := range ro.Next() {
				svc.Publish("iotgw/ota/"+gw+"/desired", 1, true, doc)
			}
			select {
			case <-progress:
			case <-time.After(100 * time.Millisecond):
			case <-deadline:
				tg, ok, bad := ro.Counts()
				t.Fatalf("rollout of v%d stuck: %d targeted, %d ok, %d failed", v, tg, ok, bad)
			}
		}
		return ro, time.Since(start)
	}

	good, took := roll(1, "connectors: [] # good\n")
	if a := good.Aborted(); a != "" {
		t.Fatalf("good rollout aborted: %s", a)
	}
	for i, u := range updaters {
		if s := u.Status(); s.Version != 1 || s.State != Committed {
			t.Fatalf("%s after the good rollout: %+v", names[i], s)
		}
	}
	t.Logf("good bundle reached all %d gateways in %s", n, took.Round(time.Millisecond))

	bad, took := roll(2, "connectors: [] # bad\n")
	if bad.Aborted() == "" {
		t.Fatal("bad rollout not aborted")
	}
	tg, ok, failed := bad.Counts()
	if tg != policy.Canary || ok != 0 || failed != policy.Canary {
		t.Fatalf("bad rollout: %d targeted, %d ok, %d failed; want only the canary", tg, ok, failed)
	}
	for i, u := range updaters {
		s := u.Status()
		if s.Version != 1 {
			t.Fatalf("%s runs version %d after the aborted rollout", names[i], s.Version)
		}
		took2 := s.Offered == 2
		if took2 != (i < policy.Canary) {
			t.Fatalf("%s offered %d", names[i], s.Offered)
		}
		if took2 && s.State != RolledBack {
			t.Fatalf("%s took the bad bundle and is %s", names[i], s.State)
		}
	}
	t.Logf("bad bundle aborted after %s: %d gateways took it and rolled back (%s)", took.Round(time.Millisecond), tg, bad.Aborted())
}
