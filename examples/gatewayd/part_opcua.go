//go:build !gw_noopcua

package main

import "github.com/iotgw/gateway/connector/opcua"

// The OPC UA client connector and its codec (both kind "opcua"). Modbus
// RTU is part of the modbus kind (part_modbus.go).
func init() {
	addPart(partOPCUA, func(d *daemon) error { return opcua.Register(d.reg) })
}
