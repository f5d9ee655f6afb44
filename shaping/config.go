package shaping

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"gopkg.in/yaml.v3"

	gateway "github.com/iotgw/gateway"
)

// MaxClasses is the number of traffic classes the BPF programs hold.
const MaxClasses = 8

// Standard DSCP code points used by DefaultClasses.
const (
	DSCPBestEffort uint8 = 0
	DSCPAF41       uint8 = 34
	DSCPEF         uint8 = 46
)

// Config drives a Shaper. It decodes from YAML with gateway.Section.Decode
// or ParseConfig:
//
//	interface: eth0
//	link_bits: 100000000
//	classes:
//	  - {name: voice, dscp: [46], minor: 0x10, rate_bits: 2000000}
//	  - {name: sync,  dscp: [34], minor: 0x20, rate_bits: 10000000, ingress_bits: 10000000}
//	  - {name: bulk,  dscp: [0],  minor: 0x30, rate_bits: 10000000, remark: 0}
//	default_class: bulk
//	sampling: {every: 1000}
type Config struct {
	// Interface is the network interface to attach to. Empty defers
	// attaching to the first Apply.
	Interface string `yaml:"interface"`
	// Classes are the QoS classes, at most MaxClasses. Empty means
	// DefaultClasses (EF, AF41, BE, unlimited).
	Classes []ClassConfig `yaml:"classes"`
	// DefaultClass names the class for DSCP values no class lists.
	// Default: the last class (by convention best effort).
	DefaultClass string `yaml:"default_class"`
	// LinkBits is the link capacity in bit/s. It caps the HTB parent class
	// (and so the sum of borrowed rates) and is the reference for "link
	// busy" sampling. Default: the sum of the class rates and ceilings, or
	// 1 Gbit/s when no class has a rate.
	LinkBits uint64 `yaml:"link_bits"`
	// HTBMajor is the major number of the root HTB qdisc the shaper owns on
	// the interface; class handles are HTBMajor:Minor. Default 1.
	HTBMajor uint16 `yaml:"htb_major"`
	// Egress picks the egress rate mechanism: "auto" (EDT over sch_fq when
	// the kernel has it, else HTB), "htb", "edt", or "none" (classify and
	// count only, leave the qdisc alone). Default "auto".
	Egress string `yaml:"egress"`
	// Attach picks the hook: "auto" (TCX, else legacy clsact), "tcx" or
	// "clsact". Default "auto".
	Attach string `yaml:"attach"`
	// Events picks the event transport: "auto" (ring buffer, else perf
	// event array), "ringbuf" or "perf". Default "auto".
	Events string `yaml:"events"`
	// Sampling sets the packet sampling policy.
	Sampling SamplingConfig `yaml:"sampling"`
}

// ClassConfig is one QoS class.
type ClassConfig struct {
	// Name labels the class in stats and events.
	Name string `yaml:"name"`
	// DSCP lists the code points (0..63) mapped to this class.
	DSCP []uint8 `yaml:"dscp"`
	// Minor is the HTB class minor number. Default 0x10 * (index+1).
	Minor uint16 `yaml:"minor"`
	// RateBits is the guaranteed egress rate in bit/s (L2 bytes). Zero
	// means the link rate.
	RateBits uint64 `yaml:"rate_bits"`
	// CeilBits is the most the class may borrow up to; default RateBits.
	CeilBits uint64 `yaml:"ceil_bits"`
	// IngressBits polices received traffic of the class in bit/s; zero
	// disables policing.
	IngressBits uint64 `yaml:"ingress_bits"`
	// IngressBurst is the policer bucket depth in bytes. Default: 20 ms at
	// IngressBits, at least 3000 bytes. Larger bursts admit more
	// back-to-back packets at the cost of short-term overshoot; smaller
	// ones under-deliver when senders are bursty.
	IngressBurst uint64 `yaml:"ingress_burst"`
	// Remark, when set, rewrites the DSCP of egress packets of the class.
	Remark *uint8 `yaml:"remark"`
}

// SamplingConfig is the dynamic sampling policy (one event per N packets).
type SamplingConfig struct {
	// Every is N in normal operation; 0 means 1000. Negative disables
	// sampling.
	Every int `yaml:"every"`
	// AfterRoute is N for RouteHold after a route is added; default 100.
	AfterRoute uint32 `yaml:"after_route"`
	// RouteHold is how long AfterRoute lasts; default 60s.
	RouteHold time.Duration `yaml:"route_hold"`
	// Busy is N while the link is above BusyPercent of LinkBits; default
	// 5000.
	Busy uint32 `yaml:"busy"`
	// BusyPercent is the utilisation (egress+ingress against LinkBits)
	// above which the link counts as busy; default 90.
	BusyPercent uint32 `yaml:"busy_percent"`
	// Interval is how often the policy is re-evaluated; default 250ms.
	Interval time.Duration `yaml:"interval"`
	// WatchRoutes listens to rtnetlink route events. Default true; set
	// false where the process may not open NETLINK_ROUTE.
	WatchRoutes *bool `yaml:"watch_routes"`
}

// DefaultClasses returns EF (46), AF41 (34) and best effort (0), in that
// order, without rate limits.
func DefaultClasses() []ClassConfig {
	return []ClassConfig{
		{Name: "ef", DSCP: []uint8{DSCPEF}, Minor: 0x10},
		{Name: "af41", DSCP: []uint8{DSCPAF41}, Minor: 0x20},
		{Name: "be", DSCP: []uint8{DSCPBestEffort}, Minor: 0x30},
	}
}

// ParseConfig decodes a YAML shaping block strictly (unknown keys are
// errors) and validates it.
func ParseConfig(data []byte) (Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("shaping config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// FromSection decodes and validates a shaping block of the gateway YAML,
// reporting problems with their YAML path and line.
func FromSection(s gateway.Section) (Config, error) {
	var c Config
	if err := s.Decode(&c); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		var fe *fieldError
		if errors.As(err, &fe) {
			return Config{}, s.Errorf(fe.field, "%s", fe.reason)
		}
		return Config{}, err
	}
	return c, nil
}

type fieldError struct{ field, reason string }

func (e *fieldError) Error() string { return "shaping config: " + e.field + ": " + e.reason }

// Validate checks ranges and references; the error names the field.
func (c *Config) Validate() error {
	bad := func(field, format string, a ...any) error {
		return &fieldError{field: field, reason: fmt.Sprintf(format, a...)}
	}
	if len(c.Classes) > MaxClasses {
		return bad("classes", "at most %d classes, got %d", MaxClasses, len(c.Classes))
	}
	names := map[string]bool{}
	minors := map[uint16]bool{}
	dscps := map[uint8]string{}
	for i, cl := range c.effectiveClasses() {
		f := fmt.Sprintf("classes[%d]", i)
		if cl.Name == "" {
			return bad(f+".name", "empty")
		}
		if names[cl.Name] {
			return bad(f+".name", "duplicate class %q", cl.Name)
		}
		names[cl.Name] = true
		m := cl.minor(i)
		if m == 0 || minors[m] {
			return bad(f+".minor", "minor %#x is zero or used twice", m)
		}
		minors[m] = true
		for _, d := range cl.DSCP {
			if d > 63 {
				return bad(f+".dscp", "%d is not a DSCP (0..63)", d)
			}
			if o, ok := dscps[d]; ok {
				return bad(f+".dscp", "%d already belongs to class %q", d, o)
			}
			dscps[d] = cl.Name
		}
		if cl.Remark != nil && *cl.Remark > 63 {
			return bad(f+".remark", "%d is not a DSCP (0..63)", *cl.Remark)
		}
		if cl.CeilBits != 0 && cl.CeilBits < cl.RateBits {
			return bad(f+".ceil_bits", "%d below rate_bits %d", cl.CeilBits, cl.RateBits)
		}
	}
	if c.DefaultClass != "" && !names[c.DefaultClass] {
		return bad("default_class", "no class named %q", c.DefaultClass)
	}
	switch c.Egress {
	case "", "auto", "htb", "edt", "none":
	default:
		return bad("egress", "want auto, htb, edt or none, got %q", c.Egress)
	}
	switch c.Attach {
	case "", "auto", "tcx", "clsact":
	default:
		return bad("attach", "want auto, tcx or clsact, got %q", c.Attach)
	}
	switch c.Events {
	case "", "auto", "ringbuf", "perf":
	default:
		return bad("events", "want auto, ringbuf or perf, got %q", c.Events)
	}
	if c.Sampling.BusyPercent > 100 {
		return bad("sampling.busy_percent", "%d above 100", c.Sampling.BusyPercent)
	}
	return nil
}

// clone copies c so later changes by the caller cannot reach the shaper.
func (c Config) clone() Config {
	c.Classes = append([]ClassConfig(nil), c.Classes...)
	for i := range c.Classes {
		c.Classes[i].DSCP = append([]uint8(nil), c.Classes[i].DSCP...)
		if r := c.Classes[i].Remark; r != nil {
			v := *r
			c.Classes[i].Remark = &v
		}
	}
	return c
}

func (c *Config) effectiveClasses() []ClassConfig {
	if len(c.Classes) == 0 {
		return DefaultClasses()
	}
	return c.Classes
}

func (cl ClassConfig) minor(i int) uint16 {
	if cl.Minor != 0 {
		return cl.Minor
	}
	return uint16(0x10 * (i + 1))
}

func (c *Config) major() uint16 {
	if c.HTBMajor == 0 {
		return 1
	}
	return c.HTBMajor
}

func (c *Config) linkBits() uint64 {
	if c.LinkBits != 0 {
		return c.LinkBits
	}
	var sum uint64
	for _, cl := range c.effectiveClasses() {
		sum += max(cl.RateBits, cl.CeilBits)
	}
	if sum == 0 {
		return 1_000_000_000
	}
	return sum
}

func (c *Config) defaultClassIndex() int {
	cls := c.effectiveClasses()
	for i, cl := range cls {
		if cl.Name == c.DefaultClass {
			return i
		}
	}
	return len(cls) - 1
}

func (s SamplingConfig) withDefaults() SamplingConfig {
	if s.Every == 0 {
		s.Every = 1000
	}
	if s.AfterRoute == 0 {
		s.AfterRoute = 100
	}
	if s.RouteHold == 0 {
		s.RouteHold = 60 * time.Second
	}
	if s.Busy == 0 {
		s.Busy = 5000
	}
	if s.BusyPercent == 0 {
		s.BusyPercent = 90
	}
	if s.Interval == 0 {
		s.Interval = 250 * time.Millisecond
	}
	return s
}

// ConfigFromPolicy converts a gateway.Policy: class handles give the HTB
// major (of the first class) and minors; SampleEvery sets the normal rate.
func ConfigFromPolicy(p gateway.Policy) Config {
	c := Config{Interface: p.Interface}
	if p.SampleEvery != 0 {
		c.Sampling.Every = int(p.SampleEvery)
	}
	for i, tc := range p.Classes {
		if i == 0 && tc.Handle>>16 != 0 {
			c.HTBMajor = uint16(tc.Handle >> 16)
		}
		cl := ClassConfig{
			Name: tc.Name, DSCP: tc.DSCP, Minor: uint16(tc.Handle),
			RateBits: tc.RateBits, CeilBits: tc.CeilBits, IngressBits: tc.IngressBits,
		}
		if tc.Remark != 0 {
			r := tc.Remark
			cl.Remark = &r
		}
		c.Classes = append(c.Classes, cl)
	}
	return c
}
