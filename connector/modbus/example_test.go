package modbus_test

import (
	"fmt"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/connector/modbus"
)

// Two neighbouring ranges and a distant one: coalescing reads the first
// two in one request.
func ExamplePlan() {
	ranges := []modbus.Range{
		{Table: modbus.HoldingRegisters, Address: 0, Count: 4},
		{Table: modbus.HoldingRegisters, Address: 10, Count: 2},
		{Table: modbus.HoldingRegisters, Address: 500, Count: 1},
	}
	for _, b := range modbus.Plan(ranges, true, 16) {
		fmt.Println(b.Topic(), b.Count)
	}
	// Output:
	// hr/0 12
	// hr/500 1
}

func ExampleNew() {
	c, err := modbus.New(
		modbus.WithDevice(modbus.Device{
			Name: "plc1", Address: "10.0.0.5:502", Interval: 2 * time.Second,
			Ranges: []modbus.Range{{Table: modbus.InputRegisters, Address: 0, Count: 8}},
		}),
		modbus.WithTimeout(500*time.Millisecond),
	)
	if err != nil {
		fmt.Println(err)
		return
	}
	g, err := gateway.New(gateway.WithConnector("plc", c))
	if err != nil {
		fmt.Println(err)
		return
	}
	_ = g // g.Run(ctx) polls plc1 every 2s
	fmt.Println(c.Blocks("plc1"))
	// Output: [ir/0+8]
}
