//go:build !gw_nobroker

package main

import (
	"sync"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/upstream/localbroker"
)

// brokerSet collects the embedded brokers built from the configuration.
type brokerSet struct {
	mu    sync.Mutex
	built []*localbroker.Broker
}

func init() {
	addPart(partBroker, func(d *daemon) error {
		set := &brokerSet{}
		d.state[partBroker.name] = set
		d.addrs = append(d.addrs, func() []endpoint {
			var out []endpoint
			for _, b := range embeddedBrokers(d) {
				a := b.Addr()
				out = append(out, endpoint{"upstream", "mqtt://" + a, "mosquitto_sub -h " + hostPort(a) + " -t 'gw/#' -v"})
			}
			return out
		})
		return d.reg.AddSink("localbroker", func(name string, spec gateway.Section) (gateway.Sink, error) {
			var c localbroker.Config
			if err := spec.Decode(&c); err != nil {
				return nil, err
			}
			b := localbroker.New(c)
			set.mu.Lock()
			set.built = append(set.built, b)
			set.mu.Unlock()
			return b, nil
		})
	})
}

// embeddedBrokers reports the embedded brokers built from the
// configuration so far.
func embeddedBrokers(d *daemon) []*localbroker.Broker {
	set := d.state[partBroker.name].(*brokerSet)
	set.mu.Lock()
	defer set.mu.Unlock()
	return append([]*localbroker.Broker(nil), set.built...)
}
