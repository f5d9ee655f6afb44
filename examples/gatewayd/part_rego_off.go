//go:build gw_norego

package main

func init() {
	addPart(partRego, nil)
}
