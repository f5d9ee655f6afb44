//go:build gw_nosim

package main

func init() {
	addPart(partSim, nil)
}

// defaultSimModbus: this build has no simulated device.
func defaultSimModbus(*daemon) {}
