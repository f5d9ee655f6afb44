package coap_test

import (
	"fmt"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/connector/coap"
	"github.com/iotgw/gateway/dtlsx"
)

func ExampleParsePath() {
	dev, topic, err := coap.ParsePath("devices", "/devices/meter-1/energy/total")
	fmt.Println(dev, topic, err)
	// Output: meter-1 energy/total <nil>
}

func ExampleNew() {
	c, err := coap.New(
		coap.WithAddress("0.0.0.0:5683"),
		coap.WithObserve(coap.Observe{Device: "meter-1", Address: "10.0.0.8:5683", Path: "/energy"}),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = gateway.New(gateway.WithConnector("coap", c))
	fmt.Println(err)
	// Output: <nil>
}

// ExampleWithDTLS serves coaps to devices that hold a pre-shared key.
func ExampleWithDTLS() {
	var psk dtlsx.PSKTable
	_ = psk.Set([]byte("thermo-1"), []byte("coap-secret-key!"))
	c, err := coap.New(coap.WithAddress("0.0.0.0:5684"), coap.WithDTLS(dtlsx.WithPSK(&psk)))
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = gateway.New(gateway.WithConnector("coaps", c))
	fmt.Println(err)
	// Output: <nil>
}
