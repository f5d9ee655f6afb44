//go:build !gw_norules

package main

import (
	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/rules"
)

func init() {
	addPart(partRules, func(d *daemon) error {
		d.rules[".yaml"] = func(dir string, sinks []string) (gateway.Router, error) {
			o := rules.Options{Logger: d.log, Sinks: sinks}
			return rules.NewEngine(func() (gateway.Router, error) { return rules.LoadDir(dir, o) })
		}
		return nil
	})
}
