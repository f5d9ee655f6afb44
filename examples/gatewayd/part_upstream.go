//go:build !gw_nomqttup

package main

import (
	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/upstream/mqtt"
)

func init() {
	addPart(partUpstream, func(d *daemon) error {
		// Commands arriving on mqtt sinks' command topics go to devices.
		dl := &mqtt.Downlink{}
		d.bound = append(d.bound, func(g *gateway.Gateway) { dl.Bind(g) })
		return mqtt.Register(d.reg, dl)
	})
}
