package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec"
)

// A part is one optional piece of the daemon that a build tag leaves out.
// Its descriptor lives in the table below; the part's own file, guarded by
// //go:build !<tag>, registers it with addPart(desc, register), and a
// second file guarded by //go:build <tag> calls addPart(desc, nil), so a
// configuration that names one of its kinds fails with an error naming
// the tag instead of "unknown kind".
type part struct {
	name  string // short name, as in the package doc's table
	tag   string // the build tag that leaves it out
	about string
	kinds []kindRef // the YAML kinds it provides
	flag  string    // the command-line flag it owns, if any
}

// kindRef is one YAML kind: what is "connector", "codec", "sink" or "store".
type kindRef struct{ what, kind string }

var (
	partSim = part{"sim", "gw_nosim", "simulated device field and Modbus TCP device (-sim-modbus)",
		[]kindRef{{"connector", "sim"}, {"codec", "sim"}}, "sim-modbus"}
	partMQTTDevices = part{"mqtt", "gw_nomqtt", "MQTT device connector (connector/mqtt)",
		[]kindRef{{"connector", "mqtt"}}, ""}
	partCoAP = part{"coap", "gw_nocoap", "CoAP device connector (connector/coap, go-coap)",
		[]kindRef{{"connector", "coap"}}, ""}
	partDTLS = part{"dtls", "gw_nodtls", "DTLS (coaps) in the CoAP connector's dtls: block",
		nil, ""}
	partHTTP = part{"http", "gw_nohttp", "HTTP device connector (connector/httpc)",
		[]kindRef{{"connector", "http"}}, ""}
	partModbus = part{"modbus", "gw_nomodbus", "Modbus TCP connector (connector/modbus)",
		[]kindRef{{"connector", "modbus"}}, ""}
	partBroker = part{"broker", "gw_nobroker", "embedded MQTT broker sink (upstream/localbroker, mochi-mqtt)",
		[]kindRef{{"sink", "localbroker"}}, ""}
	partUpstream = part{"upstream", "gw_nomqttup", "MQTT upstream sink and downlink commands (upstream/mqtt, paho)",
		[]kindRef{{"sink", "mqtt"}}, ""}
	partSQLite = part{"sqlite", "gw_nosqlite", "SQLite store for edge mode (resume, modernc.org/sqlite)",
		[]kindRef{{"store", "sqlite"}}, ""}
	partRules = part{"rules", "gw_norules", "YAML rule files (*.yaml) in rules.dir (rules, expr-lang)",
		nil, ""}
	partRego = part{"rego", "gw_norego", "Rego policies (*.rego) in rules.dir (rules/rego, OPA)",
		nil, ""}
	partShaping = part{"shaping", "gw_noshaping", "eBPF traffic shaping from -shaping FILE (shaping, cilium/ebpf)",
		nil, "shaping"}
	partOPCUA = part{"opcua", "gw_noopcua", "OPC UA client connector and codec (connector/opcua, gopcua)",
		[]kindRef{{"connector", "opcua"}, {"codec", "opcua"}}, ""}
	partObserve = part{"observe", "gw_noobserve", "OpenTelemetry SDK: /metrics, SLOs, the JSON log handler (observe)",
		nil, ""}
)

// allParts is the documented table, in the order of the package doc.
var allParts = []part{partSim, partMQTTDevices, partCoAP, partDTLS, partHTTP, partModbus,
	partBroker, partUpstream, partSQLite, partRules, partRego, partShaping, partOPCUA, partObserve}

// minimalTags leaves out everything but the MQTT device connector, Modbus
// TCP, the SQLite store and the MQTT upstream.
var minimalTags = []string{"gw_nosim", "gw_nocoap", "gw_nodtls", "gw_nohttp", "gw_nobroker",
	"gw_norules", "gw_norego", "gw_noshaping", "gw_noopcua", "gw_noobserve"}

// built is one entry of the registration table.
type built struct {
	part
	register func(d *daemon) error // nil: compiled out
}

// registered is the registration table, filled by the part files' init
// functions and read only after.
var registered []built

func addPart(p part, register func(d *daemon) error) {
	registered = append(registered, built{p, register})
}

// daemon is what the parts register into.
type daemon struct {
	reg    *gateway.Registry
	log    *slog.Logger
	fs     *flag.FlagSet
	opts   []gateway.Option                  // gateway options parts add (shaping)
	before []func(io.Writer) (func(), error) // run before the gateway starts; return a stop function
	bound  []func(*gateway.Gateway)          // run once the gateway exists
	addrs  []func() []endpoint               // listening addresses to announce
	rules  map[string]rulesLoader            // by policy file extension
	out    map[string]string                 // tag of each part compiled out, by part name
	state  map[string]any                    // per-part state, by part name
}

// endpoint is an address a part listens on, for the start-up lines.
type endpoint struct{ label, addr, hint string }

// rulesLoader builds the rules engine from the files of dir.
type rulesLoader func(dir string, sinks []string) (gateway.Router, error)

// newDaemon registers every part this build has, and, for each part it
// left out, the kinds that part provides as errors naming its tag. fs
// gets the flags of the parts that have any; nil means a throw-away set.
func newDaemon(log *slog.Logger, fs *flag.FlagSet) (*daemon, error) {
	if fs == nil {
		fs = flag.NewFlagSet("gatewayd", flag.ContinueOnError)
	}
	d := &daemon{reg: gateway.NewRegistry(), log: log, fs: fs, rules: map[string]rulesLoader{},
		out: map[string]string{}, state: map[string]any{}}
	for _, b := range registered {
		if b.register == nil {
			d.out[b.name] = b.tag
		}
	}
	errs := []error{codec.Register(d.reg)}
	for _, b := range registered {
		if b.register != nil {
			errs = append(errs, b.register(d))
			continue
		}
		for _, k := range b.kinds {
			errs = append(errs, addCompiledOut(d.reg, k, b.tag))
		}
		if b.flag != "" {
			d.outFlag(b.flag, b.part)
		}
	}
	d.reg.SetRules(d.buildRules)
	return d, errors.Join(errs...)
}

// compiledOut is the error for a kind this build left out.
func compiledOut(spec gateway.Section, what, kind, tag string) error {
	return spec.Errorf("", "%s kind %q is not in this build of gatewayd: it was built with tag %s", what, kind, tag)
}

func addCompiledOut(reg *gateway.Registry, k kindRef, tag string) error {
	switch k.what {
	case "connector":
		return reg.AddConnector(k.kind, func(_ string, spec gateway.Section) (gateway.DeviceConnector, error) {
			return nil, compiledOut(spec, k.what, k.kind, tag)
		})
	case "codec":
		return reg.AddCodec(k.kind, func(_ string, spec gateway.Section) (gateway.Codec, error) {
			return nil, compiledOut(spec, k.what, k.kind, tag)
		})
	case "sink":
		return reg.AddSink(k.kind, func(_ string, spec gateway.Section) (gateway.Sink, error) {
			return nil, compiledOut(spec, k.what, k.kind, tag)
		})
	case "store":
		return reg.AddStore(k.kind, func(spec gateway.Section) (gateway.Store, error) {
			return nil, compiledOut(spec, k.what, k.kind, tag)
		})
	}
	return fmt.Errorf("part kind %q: unknown component %q", k.kind, k.what)
}

// buildRules is the rules factory: rules.dir holding *.rego files runs Rego
// policies, otherwise its *.yaml rule files run in the rule engine.
func (d *daemon) buildRules(c gateway.RulesConfig, sinks []string) (gateway.Router, error) {
	dir := c.Dir
	if dir == "" {
		dir = "rules"
	}
	dir = filepath.Clean(dir)
	ext, p := ".yaml", partRules
	if rego, _ := filepath.Glob(filepath.Join(dir, "*.rego")); len(rego) > 0 {
		ext, p = ".rego", partRego
	}
	load := d.rules[ext]
	if load == nil {
		return nil, fmt.Errorf("rules.dir %s holds %s files, but this build of gatewayd has no %s: it was built with tag %s", dir, "*"+ext, p.name, p.tag)
	}
	return load(dir, sinks)
}

// start runs the parts' start-up hooks; the returned function stops what
// they started, in reverse order.
func (d *daemon) start(stdout io.Writer) (func(), error) {
	var stops []func()
	stop := func() {
		for _, s := range slices.Backward(stops) {
			s()
		}
	}
	for _, f := range d.before {
		s, err := f(stdout)
		if err != nil {
			stop()
			return nil, err
		}
		if s != nil {
			stops = append(stops, s)
		}
	}
	return stop, nil
}

// bind runs the hooks that need the gateway.
func (d *daemon) bind(g *gateway.Gateway) {
	for _, f := range d.bound {
		f(g)
	}
}

// endpoints lists what the parts listen on now.
func (d *daemon) endpoints() []endpoint {
	var out []endpoint
	for _, f := range d.addrs {
		out = append(out, f()...)
	}
	return out
}

// outFlag defines a string flag of a part this build left out: setting it
// fails with the part's tag.
func (d *daemon) outFlag(name string, p part) {
	d.fs.Func(name, "not in this build ("+p.tag+"): "+p.about, func(string) error {
		return fmt.Errorf("%s is not in this build of gatewayd: it was built with tag %s", p.name, p.tag)
	})
}

// buildTags lists the exclusion tags of this build, for -version.
func buildTags() string {
	var tags []string
	for _, b := range registered {
		if b.register == nil {
			tags = append(tags, b.tag)
		}
	}
	slices.Sort(tags)
	if len(tags) == 0 {
		return "full (no exclusion tags)"
	}
	return strings.Join(tags, ",")
}
