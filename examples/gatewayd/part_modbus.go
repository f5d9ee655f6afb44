//go:build !gw_nomodbus

package main

import "github.com/iotgw/gateway/connector/modbus"

func init() {
	addPart(partModbus, func(d *daemon) error { return modbus.Register(d.reg) })
}
