//go:build !gw_nohttp

package main

import "github.com/iotgw/gateway/connector/httpc"

func init() {
	addPart(partHTTP, func(d *daemon) error { return httpc.Register(d.reg) })
}
