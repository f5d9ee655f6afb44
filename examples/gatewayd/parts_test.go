package main

import (
	"flag"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/iotgw/gateway"
)

// tagCombinations are the documented builds: the full daemon, each part
// left out alone, the minimal daemon and everything left out.
func tagCombinations() [][]string {
	combos := [][]string{nil}
	var all []string
	for _, p := range allParts {
		combos = append(combos, []string{p.tag})
		all = append(all, p.tag)
	}
	return append(combos, minimalTags, all)
}

// TestPartsTable checks that the default build registers every part of
// the documented table exactly once, with distinct tags.
func TestPartsTable(t *testing.T) {
	seen := map[string]bool{}
	for _, b := range registered {
		if seen[b.name] {
			t.Errorf("part %s registered twice", b.name)
		}
		seen[b.name] = true
		if b.register == nil {
			t.Errorf("part %s compiled out of the default build", b.name)
		}
	}
	tags := map[string]bool{}
	for _, p := range allParts {
		if !seen[p.name] {
			t.Errorf("part %s of the table has no file registering it", p.name)
		}
		if tags[p.tag] || !strings.HasPrefix(p.tag, "gw_no") {
			t.Errorf("part %s: tag %q duplicate or not gw_no...", p.name, p.tag)
		}
		tags[p.tag] = true
	}
	if len(registered) != len(allParts) {
		t.Errorf("%d parts registered, %d in the table", len(registered), len(allParts))
	}
	for _, tag := range minimalTags {
		if !tags[tag] {
			t.Errorf("minimal tag %s is not in the table", tag)
		}
	}
}

// TestCompiledOutKindNamesTheTag builds a gateway from a configuration
// naming kinds a build left out: the error names the YAML path and the
// tag for each.
func TestCompiledOutKindNamesTheTag(t *testing.T) {
	reg := gateway.NewRegistry()
	for _, k := range []kindRef{{"connector", "coap"}, {"sink", "localbroker"}, {"store", "sqlite"}, {"codec", "sim"}} {
		if err := addCompiledOut(reg, k, "gw_no"+k.kind); err != nil {
			t.Fatal(err)
		}
	}
	y := `
codecs:
  - name: s
    sim: {}
connectors:
  - name: c
    coap: {address: "127.0.0.1:0"}
sinks:
  - name: b
    localbroker: {address: "127.0.0.1:0"}
store:
  sqlite: {path: q.db}
`
	cfg, err := gateway.ParseConfig([]byte(y), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = gateway.New(gateway.WithLogger(slog.New(slog.DiscardHandler)), gateway.WithRegistry(reg), gateway.WithConfig(cfg))
	if err == nil {
		t.Fatal("New accepted kinds that are compiled out")
	}
	for _, want := range []string{"store", "gw_nosqlite"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	// The store fails first (it is static); the components report together.
	cfg.Store = nil
	_, err = gateway.New(gateway.WithLogger(slog.New(slog.DiscardHandler)), gateway.WithRegistry(reg), gateway.WithConfig(cfg))
	if err == nil {
		t.Fatal("New accepted kinds that are compiled out")
	}
	for _, want := range []string{"connectors[0]", "gw_nocoap", "sinks[0]", "gw_nolocalbroker", "codecs[0]", "gw_nosim", "gw.yaml:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}

// TestCompiledOutRulesAndFlags: rules.dir with policies of an engine the
// build left out, and a flag of a part left out, fail naming the tag.
func TestCompiledOutRulesAndFlags(t *testing.T) {
	d := testDaemon(t, slog.New(slog.DiscardHandler))
	delete(d.rules, ".rego")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "route.rego"), []byte("package gateway\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := d.buildRules(gateway.RulesConfig{Enabled: true, Dir: dir}, nil)
	if err == nil || !strings.Contains(err.Error(), "gw_norego") {
		t.Fatalf("rules with Rego compiled out: %v", err)
	}
	delete(d.rules, ".yaml")
	_, err = d.buildRules(gateway.RulesConfig{Enabled: true, Dir: t.TempDir()}, nil)
	if err == nil || !strings.Contains(err.Error(), "gw_norules") {
		t.Fatalf("rules with the rule engine compiled out: %v", err)
	}

	fs := flag.NewFlagSet("gatewayd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	d.fs = fs
	d.outFlag("shaping", partShaping)
	err = fs.Parse([]string{"-shaping", "s.yaml"})
	if err == nil || !strings.Contains(err.Error(), "gw_noshaping") {
		t.Fatalf("-shaping with shaping compiled out: %v", err)
	}
}

// TestCoAPWithoutDTLS: with gw_nodtls the CoAP connector refuses a dtls:
// block with the tag, and still builds without one.
func TestCoAPWithoutDTLS(t *testing.T) {
	d := &daemon{reg: gateway.NewRegistry(), out: map[string]string{partDTLS.name: partDTLS.tag}, state: map[string]any{}}
	for _, b := range registered {
		if b.name == partCoAP.name {
			if err := b.register(d); err != nil {
				t.Fatal(err)
			}
		}
	}
	build := func(y string) error {
		cfg, err := gateway.ParseConfig([]byte(y), "gw.yaml")
		if err != nil {
			t.Fatal(err)
		}
		g, err := gateway.New(gateway.WithLogger(slog.New(slog.DiscardHandler)), gateway.WithRegistry(d.reg), gateway.WithConfig(cfg))
		if g != nil {
			_ = g.Close()
		}
		return err
	}
	err := build("connectors:\n  - name: c\n    coap:\n      address: 127.0.0.1:0\n      dtls: {psk_file: psk.txt}\n")
	if err == nil || !strings.Contains(err.Error(), "gw_nodtls") || !strings.Contains(err.Error(), "connectors[0].coap.dtls") {
		t.Fatalf("dtls block with DTLS compiled out: %v", err)
	}
	if err := build("connectors:\n  - name: c\n    coap: {address: 127.0.0.1:0}\n"); err != nil {
		t.Fatalf("plain CoAP with DTLS compiled out: %v", err)
	}
}

// TestTagCombinationsBuild compiles gatewayd with every documented
// combination of tags (go list -export compiles without linking; the
// dependencies come from the shared build cache), then links the minimal
// daemon and checks that it names the tag of a kind it left out.
func TestTagCombinationsBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles gatewayd once per tag combination")
	}
	for _, tags := range tagCombinations() {
		arg := strings.Join(tags, ",")
		out, err := exec.Command("go", "list", "-export", "-tags", arg, "-f", "{{.Export}}", ".").CombinedOutput()
		if err != nil {
			t.Errorf("-tags %q: %v\n%s", arg, err, out)
		}
	}
	bin := filepath.Join(t.TempDir(), "gatewayd")
	if out, err := exec.Command("go", "build", "-tags", strings.Join(minimalTags, ","), "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("minimal build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "-version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), strings.Join(slices.Sorted(slices.Values(minimalTags)), ",")) {
		t.Fatalf("-version: %v\n%s", err, out)
	}
	cfg := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(cfg, []byte("connectors:\n  - name: c\n    coap: {address: 127.0.0.1:0}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "-config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "gw_nocoap") || !strings.Contains(string(out), "connectors[0]") {
		t.Fatalf("minimal daemon with a coap connector: %v\n%s", err, out)
	}
}

// TestDaemonLinksNoTestHelpers: neither the full nor the minimal daemon
// depends on the testing package or the test helpers under internal/.
func TestDaemonLinksNoTestHelpers(t *testing.T) {
	for _, tags := range [][]string{nil, minimalTags} {
		out, err := exec.Command("go", "list", "-deps", "-tags", strings.Join(tags, ","), ".").CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		for _, p := range strings.Fields(string(out)) {
			switch p {
			case "testing", "github.com/iotgw/gateway/internal/testenv", "github.com/iotgw/gateway/internal/conntest",
				"github.com/iotgw/gateway/internal/nstest", "github.com/iotgw/gateway/internal/tcpkeepalive/katest":
				t.Errorf("tags %q: gatewayd depends on %s", tags, p)
			}
		}
	}
}
