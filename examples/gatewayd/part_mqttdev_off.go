//go:build gw_nomqtt

package main

func init() {
	addPart(partMQTTDevices, nil)
}
