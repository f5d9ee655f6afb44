package ota

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
)

const goodCfg = "connectors: []\n"

// installed returns an updater that committed version 5, the state every
// rejection case starts from.
func installed(t *testing.T, k *keyring, threshold int, opts ...Option) (*Updater, string, *fakeApplier) {
	t.Helper()
	dir := t.TempDir()
	a := &fakeApplier{}
	u := newTestUpdater(t, dir, k.trust(threshold), a, opts...)
	files := map[string]string{ConfigFile: goodCfg}
	if err := u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(5, files), files, k.skeys[:threshold]...))); err != nil {
		t.Fatal(err)
	}
	if st := u.Status(); st.State != Committed || st.Version != 5 {
		t.Fatalf("setup: %+v", st)
	}
	return u, dir, a
}

// signRaw signs a manifest text as is (bypassing Sign's own check).
func signRaw(t *testing.T, text string, skeys ...string) []byte {
	t.Helper()
	b, err := signNote(&note.Note{Text: text}, skeys)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRejections(t *testing.T) {
	k := newKeyring(t, "alice", "bob", "carol")
	stranger := newKeyring(t, "mallory")
	cfg := map[string]string{ConfigFile: "connectors: [] # v6\n"}
	type tc struct {
		name   string
		bundle func(t *testing.T) []byte
		opts   []Option
		want   error
	}
	cases := []tc{
		{"fewer than k signatures", func(t *testing.T) []byte { return bundle(t, manifest(6, cfg), cfg, k.skeys[0]) }, nil, ErrThreshold},
		{"unknown key", func(t *testing.T) []byte {
			return bundle(t, manifest(6, cfg), cfg, k.skeys[0], stranger.skeys[0])
		}, nil, ErrUnknownKey},
		{"tampered manifest", func(t *testing.T) []byte {
			signed, _ := Sign(manifest(6, cfg), k.skeys[:2]...)
			return pack(t, bytes.Replace(signed, []byte("version 6"), []byte("version 9"), 1), cfg)
		}, nil, ErrBadSignature},
		{"same version", func(t *testing.T) []byte { return bundle(t, manifest(5, cfg), cfg, k.skeys[:2]...) }, nil, ErrDowngrade},
		{"older version", func(t *testing.T) []byte { return bundle(t, manifest(3, cfg), cfg, k.skeys[:2]...) }, nil, ErrDowngrade},
		{"expired", func(t *testing.T) []byte {
			m := manifest(6, cfg)
			m.Created, m.Expires = testNow.Add(-48*time.Hour), testNow.Add(-time.Second)
			return bundle(t, m, cfg, k.skeys[:2]...)
		}, nil, ErrExpired},
		{"created in the future", func(t *testing.T) []byte {
			m := manifest(6, cfg)
			m.Created, m.Expires = testNow.Add(time.Hour), testNow.Add(48*time.Hour)
			return bundle(t, m, cfg, k.skeys[:2]...)
		}, nil, ErrExpired},
		{"hash mismatch", func(t *testing.T) []byte {
			return bundle(t, manifest(6, cfg), map[string]string{ConfigFile: "connectors: [] # v7\n"}, k.skeys[:2]...)
		}, nil, ErrHashMismatch},
		{"size mismatch", func(t *testing.T) []byte {
			return bundle(t, manifest(6, cfg), map[string]string{ConfigFile: "connectors: [] # v6 and more\n"}, k.skeys[:2]...)
		}, nil, ErrSizeMismatch},
		{"missing file", func(t *testing.T) []byte {
			files := map[string]string{ConfigFile: cfg[ConfigFile], "rules/a.rego": "package a\n"}
			return bundle(t, manifest(6, files), cfg, k.skeys[:2]...)
		}, nil, ErrSizeMismatch},
		{"unlisted file", func(t *testing.T) []byte {
			return bundle(t, manifest(6, cfg), map[string]string{ConfigFile: cfg[ConfigFile], "extra.yaml": "x"}, k.skeys[:2]...)
		}, nil, ErrSizeMismatch},
		{"manifest path leaves the root", func(t *testing.T) []byte {
			text := strings.Replace(string(manifest(6, cfg).Format()), " "+ConfigFile, " ../"+ConfigFile, 1)
			return pack(t, signRaw(t, text, k.skeys[:2]...), nil)
		}, nil, ErrPath},
		{"absolute path", func(t *testing.T) []byte {
			text := strings.Replace(string(manifest(6, cfg).Format()), " "+ConfigFile, " /etc/"+ConfigFile, 1)
			return pack(t, signRaw(t, text, k.skeys[:2]...), nil)
		}, nil, ErrPath},
		{"archive entry leaves the root", func(t *testing.T) []byte {
			signed, _ := Sign(manifest(6, cfg), k.skeys[:2]...)
			var b bytes.Buffer
			writeTar(t, &b, signed, map[string]string{"a/../../evil": "x"})
			return b.Bytes()
		}, nil, ErrPath},
		{"oversized files", func(t *testing.T) []byte {
			big := map[string]string{ConfigFile: strings.Repeat("#", 5000) + "\n"}
			return bundle(t, manifest(6, big), big, k.skeys[:2]...)
		}, []Option{WithMaxBundleSize(4096)}, ErrTooLarge},
		{"oversized archive", func(t *testing.T) []byte {
			b := bundle(t, manifest(6, cfg), cfg, k.skeys[:2]...)
			return append(b, make([]byte, archiveOverhead+4096)...) // trailing bytes past the limit
		}, []Option{WithMaxBundleSize(4096)}, ErrTooLarge},
		{"configuration does not validate", func(t *testing.T) []byte {
			bad := map[string]string{ConfigFile: "invalid: yes\n"}
			return bundle(t, manifest(6, bad), bad, k.skeys[:2]...)
		}, nil, ErrInvalidConfig},
		{"other gateways", func(t *testing.T) []byte {
			m := manifest(6, cfg)
			m.Target = Target{Names: []string{"line-2-*"}}
			return bundle(t, m, cfg, k.skeys[:2]...)
		}, nil, ErrNotForMe},
		{"not a bundle", func(t *testing.T) []byte { return []byte("hello\n") }, nil, ErrMalformed},
		{"hook refuses", func(t *testing.T) []byte { return bundle(t, manifest(6, cfg), cfg, k.skeys[:2]...) },
			[]Option{WithHooks(verifyFunc(func(g *Generation) error {
				if g.Manifest.Version == 6 {
					return errors.New("no")
				}
				return nil
			}))}, ErrHook},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := append([]Option{WithTarget("line-1-gw", map[string]string{"site": "a"})}, c.opts...)
			u, dir, a := installed(t, k, 2, opts...)
			before := snapshot(t, dir)
			applied := len(a.applied)
			err := u.Update(context.Background(), bytes.NewReader(c.bundle(t)))
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if after := snapshot(t, dir); !maps.Equal(before, after) {
				t.Fatalf("disk changed:\nbefore %v\nafter  %v", keys(before), keys(after))
			}
			if len(a.applied) != applied {
				t.Fatalf("applied %v", a.applied)
			}
			if got := u.Stats().Rejected[Reason(c.want)]; got != 1 {
				t.Fatalf("rejected[%s] = %d, want 1 (%v)", Reason(c.want), got, u.Stats().Rejected)
			}
			st := u.Status()
			if st.State != Failed || st.Reason == "" || st.Version != 5 {
				t.Fatalf("status %+v", st)
			}
			// The gateway keeps taking updates afterwards.
			if err := u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(7, cfg), cfg, k.skeys[1:]...))); err != nil {
				t.Fatalf("next update: %v", err)
			}
		})
	}
}

type verifyFunc func(*Generation) error

func (f verifyFunc) Verify(_ context.Context, g *Generation) error { return f(g) }

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSignedRollbackBundle(t *testing.T) {
	k := newKeyring(t, "alice")
	u, _, a := installed(t, k, 1)
	cfg := map[string]string{ConfigFile: "connectors: [] # back to 3\n"}
	m := manifest(3, cfg)
	m.Rollback = true
	if err := u.Update(context.Background(), bytes.NewReader(bundle(t, m, cfg, k.skeys...))); err != nil {
		t.Fatal(err)
	}
	if st := u.Status(); st.Version != 3 || st.State != Committed || a.last() != st.Current {
		t.Fatalf("status %+v, applied %v", st, a.applied)
	}
}

func TestKeyRotation(t *testing.T) {
	old := newKeyring(t, "old1", "old2")
	next := newKeyring(t, "new1", "new2", "new3")
	u, dir, _ := installed(t, old, 2)
	cfg := map[string]string{ConfigFile: goodCfg}
	m := manifest(6, cfg)
	m.Trust, m.Threshold = next.vkeys, 2
	// A rotation signed by fewer than the current threshold is refused.
	if err := u.Update(context.Background(), bytes.NewReader(bundle(t, m, cfg, old.skeys[0]))); !errors.Is(err, ErrThreshold) {
		t.Fatalf("rotation under threshold: %v", err)
	}
	if err := u.Update(context.Background(), bytes.NewReader(bundle(t, m, cfg, old.skeys...))); err != nil {
		t.Fatal(err)
	}
	if got := u.Trust(); !reflect.DeepEqual(got, Trust{Keys: next.vkeys, Threshold: 2}) {
		t.Fatalf("trust %+v", got)
	}
	// The old keys no longer count; the new ones do, after a restart too.
	if err := u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(7, cfg), cfg, old.skeys...))); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("old keys after rotation: %v", err)
	}
	u2 := newTestUpdater(t, dir, old.trust(2), &fakeApplier{})
	if err := u2.Update(context.Background(), bytes.NewReader(bundle(t, manifest(7, cfg), cfg, next.skeys[1:]...))); err != nil {
		t.Fatalf("new keys after restart: %v", err)
	}
}

func TestTrustCheck(t *testing.T) {
	k := newKeyring(t, "a", "b")
	for _, tr := range []Trust{{}, {Keys: k.vkeys, Threshold: 3}, {Keys: k.vkeys}, {Keys: []string{"nonsense"}, Threshold: 1}, {Keys: []string{k.vkeys[0], k.vkeys[0]}, Threshold: 1}} {
		if err := tr.Check(); err == nil {
			t.Errorf("%+v accepted", tr)
		}
	}
}
