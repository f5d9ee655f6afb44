package main

import "github.com/iotgw/gateway/connector/opcua"

// The OPC UA client connector and its codec (both kind "opcua"). Modbus
// RTU is part of the modbus kind registered in main.go.
func init() { extraKinds = append(extraKinds, opcua.Register) }
