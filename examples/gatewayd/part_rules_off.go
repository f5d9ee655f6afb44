//go:build gw_norules

package main

func init() {
	addPart(partRules, nil)
}
