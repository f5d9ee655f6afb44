//go:build gw_nocoap

package main

func init() {
	addPart(partCoAP, nil)
}
