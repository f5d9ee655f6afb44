package main

import (
	"os"
	"testing"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/upstream/mqtt"
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
	var dl mqtt.Downlink
	reg, _ := registry(&dl, nil)
	if _, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg)); err != nil {
		t.Fatalf("south.yaml: %v", err)
	}
}
