package modbus_test

import (
	"fmt"

	"github.com/iotgw/gateway/connector/modbus"
)

// Two meters on one RS-485 line: one request at a time, the same ranges
// and frames as Modbus TCP devices.
func ExampleNew_rtu() {
	line := modbus.Serial{Baud: 19200, Parity: modbus.ParityEven, StopBits: 1}
	var opts []modbus.Option
	for unit := uint8(1); unit <= 2; unit++ {
		opts = append(opts, modbus.WithDevice(modbus.Device{
			Name: fmt.Sprintf("meter-%d", unit), Transport: modbus.RTU, Address: "/dev/ttyUSB0",
			Serial: line, UnitID: unit,
			Ranges: []modbus.Range{{Table: modbus.InputRegisters, Address: 0, Count: 2}},
		}))
	}
	c, err := modbus.New(opts...)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Blocks("meter-1"), c.Blocks("meter-2"))
	// Output: [ir/0+2] [ir/0+2]
}
