package ota

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzParseManifest(f *testing.F) {
	m := manifest(7, map[string]string{ConfigFile: goodCfg, "rules/a.rego": "package a\n"})
	m.Target = Target{Names: []string{"gw-*"}, Labels: map[string]string{"site": "a"}}
	f.Add(m.Format())
	m.Rollback, m.Trust, m.Threshold = true, []string{"a+12345678+AQ=="}, 1
	f.Add(m.Format())
	f.Add([]byte(Header + "\nname x\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		m, err := ParseManifest(text)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrPath) {
				t.Fatalf("unwrapped error %v", err)
			}
			return
		}
		for _, f := range m.Files {
			if CheckPath(f.Path) != nil {
				t.Fatalf("accepted path %q", f.Path)
			}
		}
		// What parses formats back to something that parses the same.
		m2, err := ParseManifest(m.Format())
		if err != nil {
			t.Fatalf("formatted manifest does not parse: %v\n%s", err, m.Format())
		}
		if !bytes.Equal(m.Format(), m2.Format()) {
			t.Fatalf("format not stable:\n%s\n%s", m.Format(), m2.Format())
		}
	})
}

func FuzzOpenManifest(f *testing.F) {
	k := newKeyring(f, "alice", "bob")
	stranger := newKeyring(f, "mallory")
	m := manifest(3, map[string]string{ConfigFile: goodCfg})
	for _, keys := range [][]string{k.skeys, k.skeys[:1], stranger.skeys, append(k.skeys[:1:1], stranger.skeys...)} {
		b, err := Sign(m, keys...)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	tr := k.trust(2)
	f.Fuzz(func(t *testing.T, msg []byte) {
		got, signers, err := OpenManifest(msg, tr)
		if err != nil {
			for _, s := range []error{ErrMalformed, ErrPath, ErrThreshold, ErrUnknownKey, ErrBadSignature} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("unwrapped error %v", err)
		}
		// Accepted only with both trusted keys: which a fuzzer can only
		// reach by keeping a valid signed text.
		if len(signers) < 2 || signers[0] == signers[1] {
			t.Fatalf("accepted with signers %v", signers)
		}
		if got == nil {
			t.Fatal("nil manifest")
		}
	})
}
