//go:build !gw_nosim

package main

import (
	"fmt"
	"io"

	"github.com/iotgw/gateway/connector/sim"
)

func init() {
	addPart(partSim, func(d *daemon) error {
		addr := d.fs.String("sim-modbus", "", "serve a simulated Modbus TCP device on this address (default 127.0.0.1:5502 with the embedded defaults, off with -config)")
		d.state[partSim.name] = addr
		d.before = append(d.before, func(stdout io.Writer) (func(), error) {
			if *addr == "" {
				return nil, nil
			}
			dev := sim.NewModbusDevice()
			if err := dev.Start(*addr); err != nil {
				return nil, err
			}
			fmt.Fprintf(stdout, "device:   simulated Modbus TCP device on %s\n", dev.Addr())
			return func() { _ = dev.Close() }, nil
		})
		return sim.Register(d.reg)
	})
}

// defaultSimModbus serves the simulated Modbus device of the embedded
// defaults unless -sim-modbus named another address.
func defaultSimModbus(d *daemon) {
	if addr, ok := d.state[partSim.name].(*string); ok && *addr == "" {
		*addr = "127.0.0.1:5502"
	}
}
