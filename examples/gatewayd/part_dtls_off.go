//go:build gw_nodtls

package main

func init() {
	addPart(partDTLS, nil)
}
