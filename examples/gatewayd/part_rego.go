//go:build !gw_norego

package main

import (
	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/rules/rego"
)

func init() {
	addPart(partRego, func(d *daemon) error {
		d.rules[".rego"] = func(dir string, sinks []string) (gateway.Router, error) {
			return rego.NewEngine(dir, rego.Options{Logger: d.log, Sinks: sinks})
		}
		return nil
	})
}
