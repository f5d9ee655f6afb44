//go:build !gw_noopcua && !gw_nomodbus

package main

import (
	"os"
	"testing"

	"github.com/iotgw/gateway"
)

// TestSouthConfigBuilds: the OPC UA and Modbus RTU example (quoted in the
// README) is valid for the daemon's registry.
func TestSouthConfigBuilds(t *testing.T) {
	raw, err := os.ReadFile("south.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.ParseConfig(raw, "south.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := registry(t, nil)
	if _, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg)); err != nil {
		t.Fatalf("south.yaml: %v", err)
	}
}
