package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/iotgw/gateway/ota"
)

// TestRoundTrip is the README's round trip: keygen, sign, cosign, verify,
// inspect, then a gateway's Updater installs the bundle; a tampered copy
// fails verify.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bundle")
	os.MkdirAll(filepath.Join(in, "rules"), 0o755)
	os.WriteFile(filepath.Join(in, "gateway.yaml"), []byte("connectors: []\n"), 0o644)
	os.WriteFile(filepath.Join(in, "rules", "limits.rego"), []byte("package limits\n"), 0o644)
	var out bytes.Buffer
	must := func(args ...string) string {
		t.Helper()
		out.Reset()
		if err := run(args, &out); err != nil {
			t.Fatalf("otasign %s: %v", strings.Join(args, " "), err)
		}
		return out.String()
	}
	alice, bob := filepath.Join(dir, "alice"), filepath.Join(dir, "bob")
	must("keygen", "-name", "alice", "-out", alice)
	must("keygen", "-name", "bob", "-out", bob)
	otb := filepath.Join(dir, "v1.otb")
	must("sign", "-key", alice+".key", "-name", "line-3", "-version", "1", "-target-name", "gw-*", "-o", otb, in)
	err := run([]string{"verify", "-pub", alice + ".pub", "-pub", bob + ".pub", "-threshold", "2", otb}, &out)
	if !errors.Is(err, ota.ErrThreshold) {
		t.Fatalf("verify with one of two signatures: %v", err)
	}
	must("cosign", "-key", bob+".key", otb)
	if got := must("verify", "-pub", alice+".pub", "-pub", bob+".pub", "-threshold", "2", otb); !strings.HasPrefix(got, "OK line-3 version 1, 2 files, signed by alice, bob") {
		t.Fatalf("verify: %q", got)
	}
	if got := must("inspect", otb); !strings.Contains(got, "target name gw-*") || !strings.Contains(got, "rules/limits.rego") || !strings.Contains(got, "signatures: alice, bob") {
		t.Fatalf("inspect: %q", got)
	}
	// The gateway side.
	pub := func(p string) string { b, _ := os.ReadFile(p + ".pub"); return strings.TrimSpace(string(b)) }
	u, err := ota.New(filepath.Join(dir, "state"), ota.Trust{Keys: []string{pub(alice), pub(bob)}, Threshold: 2}, nopApplier{},
		ota.WithTarget("gw-7", nil), ota.WithProbation(10e6, 1e6))
	if err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(otb)
	defer f.Close()
	if err := u.Update(context.Background(), f); err != nil {
		t.Fatal(err)
	}
	// Tampering is caught.
	data, _ := os.ReadFile(otb)
	bad := bytes.Replace(data, []byte("package limits"), []byte("package limitz"), 1)
	os.WriteFile(otb, bad, 0o644)
	if err := run([]string{"verify", "-pub", alice + ".pub", otb}, &out); !errors.Is(err, ota.ErrHashMismatch) {
		t.Fatalf("tampered bundle: %v", err)
	}
}

type nopApplier struct{}

func (nopApplier) Validate(context.Context, *ota.Generation) error { return nil }
func (nopApplier) Apply(context.Context, *ota.Generation) error    { return nil }
