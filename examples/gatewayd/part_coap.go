//go:build !gw_nocoap

package main

import (
	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/connector/coap"
)

func init() {
	addPart(partCoAP, func(d *daemon) error {
		tag, noDTLS := d.out[partDTLS.name]
		if !noDTLS {
			return coap.Register(d.reg)
		}
		// Built with gw_nodtls: a dtls: block is an error naming the tag.
		// connector/coap still links dtlsx (the connector imports it).
		inner := gateway.NewRegistry()
		if err := coap.Register(inner); err != nil {
			return err
		}
		build := inner.LookupConnector("coap")
		return d.reg.AddConnector("coap", func(name string, spec gateway.Section) (gateway.DeviceConnector, error) {
			var cfg coap.Config
			if err := spec.Decode(&cfg); err != nil {
				return nil, err
			}
			if cfg.DTLS != nil {
				return nil, spec.Errorf("dtls", "DTLS is not in this build of gatewayd: it was built with tag %s", tag)
			}
			return build(name, spec)
		})
	})
}
