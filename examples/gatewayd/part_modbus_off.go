//go:build gw_nomodbus

package main

func init() {
	addPart(partModbus, nil)
}
