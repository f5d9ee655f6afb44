package ota

import (
	"bytes"
	"context"
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

// FuzzBundle feeds arbitrary archives to ReadBundle and to an Updater:
// whatever the bytes, an error wraps a sentinel (or is a plain I/O error
// from the disk), and a refused bundle leaves the state directory as it
// was.
func FuzzBundle(f *testing.F) {
	k := newKeyring(f, "alice")
	files := map[string]string{ConfigFile: goodCfg, "rules/a.rego": "package a\n"}
	m := manifest(1, files)
	m.Expires = testNow.Add(1 << 40)
	f.Add(bundle(f, m, files, k.skeys...))
	f.Add(bundle(f, m, map[string]string{ConfigFile: goodCfg}, k.skeys...))
	f.Add([]byte("not a tar"))
	dir := f.TempDir()
	u := newTestUpdater(f, dir, k.trust(1), &fakeApplier{})
	sentinels := []error{ErrMalformed, ErrPath, ErrThreshold, ErrUnknownKey, ErrBadSignature, ErrDowngrade, ErrExpired,
		ErrNotForMe, ErrHashMismatch, ErrSizeMismatch, ErrTooLarge, ErrInvalidConfig, ErrHook}
	f.Fuzz(func(t *testing.T, data []byte) {
		if b, err := ReadBundle(bytes.NewReader(data), 1<<20); err == nil {
			if _, _, err := b.Verify(k.trust(1)); err != nil && Reason(err) == "other" {
				t.Fatalf("Verify: unwrapped error %v", err)
			}
		}
		before := snapshot(t, dir)
		err := u.Update(context.Background(), bytes.NewReader(data))
		if err == nil {
			return // a valid bundle (the seed): installed
		}
		var rb *RollbackError
		if errors.As(err, &rb) {
			return
		}
		known := false
		for _, s := range sentinels {
			known = known || errors.Is(err, s)
		}
		if !known {
			t.Fatalf("unwrapped error %v", err)
		}
		if after := snapshot(t, dir); len(after) != len(before) {
			t.Fatalf("a refused bundle changed the disk: %v -> %v", keys(before), keys(after))
		}
	})
}
