package shaping_test

import (
	"errors"
	"fmt"

	gateway "github.com/iotgw/gateway"
	"github.com/iotgw/gateway/shaping"
)

// A policy for a gateway uplink: voice first, sync traffic policed on the
// way in, bulk shaped to 10 Mbit/s and re-marked to CS1.
func ExampleParseConfig() {
	cfg, err := shaping.ParseConfig([]byte(`
interface: eth0
link_bits: 50000000
classes:
  - {name: voice, dscp: [46], minor: 0x10, rate_bits: 2000000}
  - {name: sync,  dscp: [34], minor: 0x20, rate_bits: 10000000, ingress_bits: 10000000}
  - {name: bulk,  dscp: [0],  minor: 0x30, rate_bits: 10000000, ceil_bits: 30000000, remark: 8}
sampling: {every: 1000}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range cfg.Classes {
		fmt.Printf("%s: dscp %v -> htb 1:%x\n", c.Name, c.DSCP, c.Minor)
	}
	// Output:
	// voice: dscp [46] -> htb 1:10
	// sync: dscp [34] -> htb 1:20
	// bulk: dscp [0] -> htb 1:30
}

// Without privileges or kernel support New fails with an error that wraps
// gateway.ErrNotSupported; the gateway then runs on unshaped.
func ExampleNew() {
	s, err := shaping.New(shaping.Config{Interface: "eth0"})
	if errors.Is(err, gateway.ErrNotSupported) {
		fmt.Println("shaping unavailable, running unshaped")
		return
	}
	if err != nil {
		fmt.Println("shaping:", err)
		return
	}
	defer s.Close()
	st, _ := s.Stats()
	for _, c := range st.Classes {
		fmt.Println(c.Name, c.Egress.Packets)
	}
}
