package rego_test

import (
	"fmt"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/rules/rego"
)

func ExampleCompile() {
	p, err := rego.Compile(map[string]string{"route.rego": `package gateway

decision := {"sinks": ["alarms"], "priority": 7} if input.points.temperature > 80
decision := {"drop": true} if input.points.temperature <= 80
`}, rego.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	hot := &gateway.Message{Device: "d"}
	hot.AddPoint("temperature", gateway.Float(90), "C")
	cold := &gateway.Message{Device: "d"}
	cold.AddPoint("temperature", gateway.Float(20), "C")
	fmt.Println(p.Route(hot, nil), hot.Priority, p.Route(cold, nil))
	// Output: [alarms] 7 []
}
