//go:build gw_noopcua

package main

func init() {
	addPart(partOPCUA, nil)
}
