//go:build gw_noshaping

package main

func init() {
	addPart(partShaping, nil)
}
