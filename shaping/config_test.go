package shaping

import (
	"errors"
	"strings"
	"testing"

	gateway "github.com/iotgw/gateway"
)

func TestParseConfig(t *testing.T) {
	c, err := ParseConfig([]byte(`
interface: eth0
link_bits: 100000000
classes:
  - {name: voice, dscp: [46], minor: 0x10, rate_bits: 2000000}
  - {name: sync, dscp: [34, 36], rate_bits: 10000000, ingress_bits: 10000000}
  - {name: bulk, dscp: [0], minor: 0x30, rate_bits: 10000000, ceil_bits: 50000000, remark: 8}
default_class: bulk
egress: htb
sampling: {every: 2000, route_hold: 30s}
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Interface != "eth0" || len(c.Classes) != 3 || c.Classes[1].minor(1) != 0x20 ||
		*c.Classes[2].Remark != 8 || c.Sampling.Every != 2000 || c.Sampling.RouteHold.Seconds() != 30 ||
		c.defaultClassIndex() != 2 || c.linkBits() != 100_000_000 {
		t.Errorf("decoded %+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ yaml, field string }{
		{`classes: [{name: a, dscp: [64]}]`, "classes[0].dscp"},
		{`classes: [{name: a, dscp: [1]}, {name: b, dscp: [1]}]`, "classes[1].dscp"},
		{`classes: [{name: a}, {name: a}]`, "classes[1].name"},
		{`classes: [{name: a, minor: 5}, {name: b, minor: 5}]`, "classes[1].minor"},
		{`classes: [{name: a, rate_bits: 10, ceil_bits: 5}]`, "classes[0].ceil_bits"},
		{`classes: [{name: a, remark: 70}]`, "classes[0].remark"},
		{`default_class: nope`, "default_class"},
		{`egress: netem`, "egress"},
		{`attach: xdp`, "attach"},
		{`events: kafka`, "events"},
		{`sampling: {busy_percent: 120}`, "sampling.busy_percent"},
		{`classes: [{name: a}, {name: b}, {name: c}, {name: d}, {name: e}, {name: f}, {name: g}, {name: h}, {name: i}]`, "classes"},
		{`unknown_key: 1`, "unknown_key"},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			_, err := ParseConfig([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %v, want one naming %s", err, tt.field)
			}
		})
	}
}

// TestFromSection decodes the shaping block through the gateway's strict,
// path-aware YAML (as a store block, the only place the root config hands
// out raw sections) and checks errors carry the YAML path and line.
func TestFromSection(t *testing.T) {
	parse := func(body string) gateway.Section {
		t.Helper()
		cfg, err := gateway.ParseConfig([]byte("store:\n  shaping:\n"+body), "gw.yaml")
		if err != nil {
			t.Fatalf("gateway config: %v", err)
		}
		if cfg.Store == nil {
			t.Fatal("no store section")
		}
		return cfg.Store.Spec
	}
	c, err := FromSection(parse("    interface: eth1\n    classes: [{name: v, dscp: [46]}]\n"))
	if err != nil || c.Interface != "eth1" || c.Classes[0].Name != "v" {
		t.Fatalf("decoded %+v, %v", c, err)
	}
	_, err = FromSection(parse("    interface: eth1\n    egress: bogus\n"))
	var ce *gateway.ConfigError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "store.shaping.egress") || ce.Line != 4 {
		t.Fatalf("error %v, want a ConfigError at store.shaping.egress line 4", err)
	}
	if _, err := FromSection(parse("    interfce: eth1\n")); err == nil || !strings.Contains(err.Error(), "interfce") {
		t.Fatalf("unknown key: %v", err)
	}
}

func TestConfigFromPolicy(t *testing.T) {
	c := ConfigFromPolicy(gateway.Policy{Interface: "eth0", SampleEvery: 10, Classes: []gateway.TrafficClass{
		{Name: "v", DSCP: []uint8{46}, Handle: 3<<16 | 0x11, RateBits: 5, CeilBits: 9, IngressBits: 7, Remark: 40},
		{Name: "b", DSCP: []uint8{0}, Handle: 3<<16 | 0x12},
	}})
	if c.HTBMajor != 3 || c.Classes[0].Minor != 0x11 || *c.Classes[0].Remark != 40 || c.Classes[1].Remark != nil ||
		c.Classes[0].CeilBits != 9 || c.Classes[0].IngressBits != 7 || c.Sampling.Every != 10 {
		t.Errorf("converted %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("interface: eth0\nclasses: [{name: a, dscp: [46]}]\n"))
	f.Add([]byte("classes: [{name: a, dscp: [99]}]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config fails validation: %v", err)
		}
		if len(c.effectiveClasses()) > MaxClasses || c.defaultClassIndex() >= len(c.effectiveClasses()) {
			t.Fatalf("accepted config out of range: %+v", c)
		}
	})
}
