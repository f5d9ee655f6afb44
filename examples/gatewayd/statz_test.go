package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/testenv"
	"github.com/iotgw/gateway/upstream/localbroker"
)

// statz is the part of /statz this test reads.
type statz struct {
	Connectors []struct {
		Name     string `json:"name"`
		Up       bool   `json:"up"`
		Counters *struct {
			Total struct {
				Frames    uint64 `json:"frames"`
				Bytes     uint64 `json:"bytes"`
				Malformed uint64 `json:"malformed"`
				Denied    uint64 `json:"denied"`
			} `json:"total"`
			Devices map[string]struct {
				Frames uint64 `json:"frames"`
				Denied uint64 `json:"denied"`
			} `json:"devices"`
		} `json:"counters"`
	} `json:"connectors"`
}

func getStatz(t *testing.T, addr string) statz {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/statz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st statz
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// runGateway runs the daemon's registry on y with a quiet logger; the
// gateway stops when the test ends. brokers reports the embedded brokers
// built from y.
func runGateway(t *testing.T, y string, opts ...gateway.Option) (g *gateway.Gateway, brokers func() []*localbroker.Broker) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	d := testDaemon(t, log)
	reg, brokers := d.reg, func() []*localbroker.Broker { return embeddedBrokers(d) }
	cfg, err := gateway.ParseConfig([]byte(y), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err = gateway.New(append([]gateway.Option{gateway.WithLogger(log), gateway.WithRegistry(reg), gateway.WithConfig(cfg)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	d.bind(g)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	})
	return g, brokers
}

func waitUntil(t *testing.T, what string, cond func() bool, detail ...any) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			for _, d := range detail {
				t.Logf("%+v", d)
			}
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestStatzShowsConnectorCounters causes an ACL denial on the MQTT listener
// with mosquitto_pub and sends a malformed CoAP datagram, then reads the
// counters over HTTP from /statz.
func TestStatzShowsConnectorCounters(t *testing.T) {
	pub := testenv.RequireCommand(t, "mosquitto_pub")
	mqttPort, coapPort := testenv.FreePort(t), testenv.FreeUDPPort(t)
	g, _ := runGateway(t, fmt.Sprintf(`
health: {address: "127.0.0.1:0"}
codecs:
  - name: json
    json: {}
connectors:
  - name: mqtt-devices
    codec: json
    mqtt:
      address: 127.0.0.1:%d
      devices: [{username: sensor-1, password: pw}]
  - name: coap-devices
    codec: json
    coap: {address: "127.0.0.1:%d"}
sinks:
  - name: local
    localbroker: {address: "127.0.0.1:0"}
`, mqttPort, coapPort))
	waitUntil(t, "health server", func() bool { return g.HealthAddr() != "" })
	addr := g.HealthAddr()
	waitUntil(t, "connectors up", func() bool {
		st := getStatz(t, addr)
		up := 0
		for _, c := range st.Connectors {
			if c.Up {
				up++
			}
		}
		return up == 2
	})

	for _, topic := range []string{"devices/sensor-1/env", "devices/sensor-2/env"} { // the second is outside the ACL
		out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", fmt.Sprint(mqttPort), "-u", "sensor-1", "-P", "pw",
			"-t", topic, "-m", `{"t":21.5}`).CombinedOutput()
		if err != nil {
			t.Logf("mosquitto_pub %s: %v %s", topic, err, out)
		}
	}
	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", coapPort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{0x40, 0x02, 0, 3, 0xf1, 0}); err != nil { // reserved option delta
		t.Fatal(err)
	}

	var last statz
	waitUntil(t, "counters in /statz", func() bool {
		last = getStatz(t, addr)
		var mq, co bool
		for _, c := range last.Connectors {
			if c.Counters == nil {
				continue
			}
			switch c.Name {
			case "mqtt-devices":
				d := c.Counters.Devices["sensor-1"]
				mq = c.Counters.Total.Denied == 1 && c.Counters.Total.Frames == 1 && c.Counters.Total.Bytes == 10 && d.Denied == 1 && d.Frames == 1
			case "coap-devices":
				co = c.Counters.Total.Malformed == 1
			}
		}
		return mq && co
	}, &last)
}
