// Command gatewayd is the reference gateway daemon.
//
// With no flags it runs a real gateway on embedded defaults (default.yaml)
// and needs nothing installed: simulated devices feed frames through the
// pipeline into an MQTT broker inside the process, and health endpoints
// answer on 127.0.0.1:8080.
//
//	go run ./examples/gatewayd
//	mosquitto_sub -h 127.0.0.1 -p 1883 -t 'gw/#' -v   # watch the upstream
//	curl 127.0.0.1:8080/readyz
//
// With -config FILE it runs from that YAML file instead, reloading it when
// it changes or on SIGHUP. SIGINT/SIGTERM shut down cleanly. With
// rules.enabled, rules.dir holding *.rego files routes with those Rego
// policies, otherwise with the *.yaml rule files there. -shaping FILE
// shapes the host NIC with the eBPF shaper (a shaping block as in
// examples/shaping) while the gateway runs. -version prints the build tags.
// Logs are JSON by default (log.format, -log-format); /metrics serves the
// gateway's instruments (package observe).
//
// With -ota FILE (a YAML file with an ota: block, see ota.go and package
// ota) it installs signed, staged updates of its configuration and rolls
// them back when its health degrades. The ota: block lives in a file of
// its own on purpose: it holds the trust anchors (keys, threshold), which
// the configuration that bundles replace must not be able to change.
//
// # Build tags
//
// The default build (no tags) is the full daemon. Each optional part has
// an exclusion tag; a vendor builds only what it ships:
//
//	| tag          | leaves out                                                  | YAML / flag it serves       |
//	|--------------|-------------------------------------------------------------|-----------------------------|
//	| gw_nosim     | simulated device field and Modbus TCP device                | connector/codec sim, -sim-modbus |
//	| gw_nomqtt    | MQTT device connector (connector/mqtt)                      | connector mqtt              |
//	| gw_nocoap    | CoAP device connector (connector/coap, go-coap)             | connector coap              |
//	| gw_nodtls    | DTLS (coaps) of the CoAP connector                          | coap's dtls: block          |
//	| gw_nohttp    | HTTP device connector (connector/httpc)                     | connector http              |
//	| gw_nomodbus  | Modbus TCP connector (connector/modbus)                     | connector modbus            |
//	| gw_nobroker  | embedded MQTT broker (upstream/localbroker, mochi-mqtt)     | sink localbroker            |
//	| gw_nomqttup  | MQTT upstream and downlink commands (upstream/mqtt, paho)   | sink mqtt                   |
//	| gw_nosqlite  | SQLite store for edge mode (resume, modernc.org/sqlite)     | store sqlite                |
//	| gw_norules   | YAML rule files (rules, expr-lang)                          | rules.dir/*.yaml            |
//	| gw_norego    | Rego policies (rules/rego, OPA)                             | rules.dir/*.rego            |
//	| gw_noshaping | eBPF traffic shaping (shaping, cilium/ebpf)                 | -shaping                    |
//	| gw_noopcua   | OPC UA client connector and codec (connector/opcua, gopcua) | connector/codec opcua       |
//	| gw_noobserve | OpenTelemetry SDK: /metrics, SLOs, JSON log handler (observe) | observe: (ignored, warned) |
//
// The minimal daemon (MQTT devices, Modbus TCP, the SQLite store and the
// MQTT upstream; sizes in BENCHMARKS.md):
//
//	go build -trimpath -ldflags='-s -w' \
//	  -tags gw_nosim,gw_nocoap,gw_nodtls,gw_nohttp,gw_nobroker,gw_norules,gw_norego,gw_noshaping,gw_noopcua,gw_noobserve \
//	  ./examples/gatewayd
//
// A configuration that names a part the build left out fails with the
// YAML path and the tag ("connectors[2]: connector kind "coap" is not in
// this build of gatewayd: it was built with tag gw_nocoap"), as do a
// rules.dir of the missing engine and the flag of a missing part. The
// embedded defaults use sim, Modbus, MQTT, CoAP, HTTP and the embedded
// broker, so a reduced build runs with -config. gw_nodtls refuses the
// dtls: block but links dtlsx as long as CoAP is in (connector/coap
// imports it). The codecs and the core (health endpoints included) are
// always in. TestTagCombinationsBuild compiles every combination listed
// here: the full daemon, each tag alone, the minimal set, all tags.
//
// # Adding a part
//
// A part is a row of the table above and three things in this package:
//
//  1. its descriptor in parts.go (name, tag, the YAML kinds it provides,
//     the flag it owns) and an entry in allParts;
//  2. part_<name>.go, guarded by //go:build !<tag>, whose init calls
//     addPart(desc, register), register adding its kinds to d.reg (and,
//     when it needs them, flags on d.fs, start-up hooks in d.before,
//     gateway options in d.opts, hooks after New in d.bound, listening
//     addresses in d.addrs);
//  3. part_<name>_off.go, guarded by //go:build <tag>, whose init calls
//     addPart(desc, nil): the daemon then registers each of its kinds as
//     an error naming the tag.
//
// Modbus RTU is inside the modbus part (connector/modbus); leaving its
// serial code out on its own would need connector/modbus to register RTU
// separately.
package main
