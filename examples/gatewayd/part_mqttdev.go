//go:build !gw_nomqtt

package main

import mqttdev "github.com/iotgw/gateway/connector/mqtt"

func init() {
	addPart(partMQTTDevices, func(d *daemon) error { return mqttdev.Register(d.reg) })
}
