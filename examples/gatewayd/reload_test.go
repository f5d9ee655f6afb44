package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/testenv"
)

// TestTruncatedConfigKeepsDevicesServed runs the daemon's registry from a
// watched file, truncates the file to 0 bytes as a copy or an editor does
// for a moment, and checks that a real MQTT device is still served and its
// reading still reaches the upstream broker.
func TestTruncatedConfigKeepsDevicesServed(t *testing.T) {
	pub := testenv.RequireCommand(t, "mosquitto_pub")
	port := testenv.FreePort(t)
	path := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(`
connectors:
  - name: mqtt-devices
    mqtt:
      address: 127.0.0.1:%d
      devices: [{username: sensor-1, password: pw}]
sinks:
  - name: local
    localbroker: {address: "127.0.0.1:0", topic_prefix: gw}
`, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	reg, brokers := registry(t, log)
	g, err := gateway.New(gateway.WithLogger(log), gateway.WithRegistry(reg), gateway.WithConfigFile(path, true))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitUntil(t, "gateway ready", func() bool { return g.Ready(t.Context()) == nil })
	var mu sync.Mutex
	var got []string
	if err := brokers()[0].Subscribe("gw/#", 1, func(topic string, _ []byte) {
		mu.Lock()
		got = append(got, topic)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}

	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the empty file rejected", func() bool { return g.Stats().ReloadErrors == 1 })
	if out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", fmt.Sprint(port), "-u", "sensor-1", "-P", "pw", "-q", "1",
		"-t", "devices/sensor-1/env", "-m", "21.5").CombinedOutput(); err != nil {
		t.Fatalf("device refused after the empty file: %v %s", err, out)
	}
	waitUntil(t, "the reading upstream", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	})
	if st := g.Stats(); len(st.Connectors) != 1 || len(st.Sinks) != 1 || st.Reloads != 0 {
		t.Fatalf("after the empty file: %d connectors, %d sinks, %d reloads", len(st.Connectors), len(st.Sinks), st.Reloads)
	}
}
