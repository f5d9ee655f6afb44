//go:build gw_nobroker

package main

func init() {
	addPart(partBroker, nil)
}
