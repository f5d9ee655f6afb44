//go:build !gw_nosqlite

package main

import "github.com/iotgw/gateway/resume"

func init() {
	addPart(partSQLite, func(d *daemon) error { return resume.Register(d.reg) })
}
