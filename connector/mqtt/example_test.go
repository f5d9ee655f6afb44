package mqtt_test

import (
	"fmt"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/connector/mqtt"
)

func ExampleParseTopicPattern() {
	p, err := mqtt.ParseTopicPattern("sensors/{device}/#")
	if err != nil {
		fmt.Println(err)
		return
	}
	dev, ok := p.Device("sensors/boiler-3/temp")
	fmt.Println(p.Filter, dev, ok)
	// Output: sensors/+/# boiler-3 true
}

func ExampleNewListener() {
	l, err := mqtt.NewListener(
		mqtt.WithListenAddress("0.0.0.0:1883"),
		mqtt.WithDeviceAuth(mqtt.DeviceAuth{Username: "sensor-1", Password: "s3cret"}),
		mqtt.WithMaxSessions(20000),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = gateway.New(gateway.WithConnector("mqtt", l))
	fmt.Println(err)
	// Output: <nil>
}
