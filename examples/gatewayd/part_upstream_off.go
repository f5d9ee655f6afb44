//go:build gw_nomqttup

package main

func init() {
	addPart(partUpstream, nil)
}
