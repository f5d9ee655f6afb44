package main

import (
	"log/slog"
	"testing"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/upstream/localbroker"
)

// testDaemon builds the daemon of this build with log.
func testDaemon(t testing.TB, log *slog.Logger) *daemon {
	t.Helper()
	d, err := newDaemon(log, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// registry returns the daemon's registry and the embedded brokers built
// from the configuration.
func registry(t testing.TB, log *slog.Logger) (*gateway.Registry, func() []*localbroker.Broker) {
	d := testDaemon(t, log)
	return d.reg, func() []*localbroker.Broker { return embeddedBrokers(d) }
}
