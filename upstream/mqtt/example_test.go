package mqtt_test

import (
	"log"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/upstream/mqtt"
)

// A sink publishing at QoS 1 over mutual TLS, taking downlink commands on
// plant/cmd/<connector>/<device> and writing them through the gateway.
func ExampleNew() {
	var dl mqtt.Downlink
	sink, err := mqtt.New("cloud", mqtt.Config{
		Broker:       "ssl://broker.example.com:8883",
		Topic:        "plant/{site}/{device}/{topic}",
		CAFile:       "/etc/gw/ca.pem",
		CertFile:     "/etc/gw/client.pem",
		KeyFile:      "/etc/gw/client.key",
		CommandTopic: "plant/cmd",
	}, mqtt.WithCommands(&dl))
	if err != nil {
		log.Print(err)
		return
	}
	g, err := gateway.New(gateway.WithSink("cloud", sink), gateway.WithQoS(1))
	if err != nil {
		log.Print(err)
		return
	}
	dl.Bind(g)
	_ = g // g.Run(ctx)
}
