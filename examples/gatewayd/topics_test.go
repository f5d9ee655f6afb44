package main

import (
	"fmt"
	"net/http"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/iotgw/gateway/internal/testenv"
)

// TestSameReadingSameUpstreamTopic sends one reading of sensor-1 through
// each device protocol with real clients (mosquitto_pub, coap-client, an
// HTTP POST): upstream, all three arrive on the same topic.
func TestSameReadingSameUpstreamTopic(t *testing.T) {
	pub := testenv.RequireCommand(t, "mosquitto_pub")
	coapc := testenv.RequireCommand(t, "coap-client-notls")
	mqttPort, coapPort, httpPort := testenv.FreePort(t), testenv.FreeUDPPort(t), testenv.FreePort(t)
	g, brokers := runGateway(t, fmt.Sprintf(`
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
  - name: http-devices
    codec: json
    http:
      address: 127.0.0.1:%d
      tokens: {sensor-1: tok}
sinks:
  - name: local
    localbroker: {address: "127.0.0.1:0", topic_prefix: gw}
`, mqttPort, coapPort, httpPort))
	waitUntil(t, "gateway ready", func() bool {
		return len(brokers()) == 1 && brokers()[0].Addr() != "" && g.Ready(t.Context()) == nil
	})
	var mu sync.Mutex
	var topics []string
	if err := brokers()[0].Subscribe("gw/#", 1, func(topic string, _ []byte) {
		mu.Lock()
		topics = append(topics, topic)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}

	reading := `{"t":21.5}`
	if out, err := exec.Command(pub, "-h", "127.0.0.1", "-p", fmt.Sprint(mqttPort), "-u", "sensor-1", "-P", "pw", "-q", "1",
		"-t", "devices/sensor-1/env", "-m", reading).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub: %v %s", err, out)
	}
	if out, err := exec.Command(coapc, "-B", "5", "-m", "post", "-e", reading,
		fmt.Sprintf("coap://127.0.0.1:%d/devices/sensor-1/env", coapPort)).CombinedOutput(); err != nil {
		t.Fatalf("coap-client: %v %s", err, out)
	}
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/devices/sensor-1/env", httpPort), strings.NewReader(reading))
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("HTTP POST: %s", resp.Status)
	}

	var got []string
	waitUntil(t, "three readings upstream", func() bool {
		mu.Lock()
		defer mu.Unlock()
		got = append(got[:0], topics...)
		return len(got) >= 3
	}, &got)
	sort.Strings(got)
	if want := []string{"gw/sensor-1/env", "gw/sensor-1/env", "gw/sensor-1/env"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("upstream topics %q, want %q", got, want)
	}
}
