//go:build gw_nohttp

package main

func init() {
	addPart(partHTTP, nil)
}
