//go:build !gw_nodtls

package main

// DTLS has nothing of its own to register: the CoAP connector serves its
// dtls: block. Built with gw_nodtls, part_coap.go rejects that block.
func init() {
	addPart(partDTLS, func(*daemon) error { return nil })
}
