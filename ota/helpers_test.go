package ota

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// keyring is a set of test signing keys.
type keyring struct {
	skeys, vkeys []string
}

func newKeyring(t testing.TB, names ...string) *keyring {
	t.Helper()
	k := &keyring{}
	for _, n := range names {
		s, v, err := GenerateKey(n)
		if err != nil {
			t.Fatal(err)
		}
		k.skeys, k.vkeys = append(k.skeys, s), append(k.vkeys, v)
	}
	return k
}

func (k *keyring) trust(threshold int) Trust { return Trust{Keys: k.vkeys, Threshold: threshold} }

var testNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// manifest returns a manifest of version v over files.
func manifest(v uint64, files map[string]string) *Manifest {
	m := &Manifest{Name: "cfg", Version: v, Created: testNow.Add(-time.Hour), Expires: testNow.Add(24 * time.Hour)}
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		m.Files = append(m.Files, FileOf(p, []byte(files[p])))
	}
	return m
}

// bundle signs m with skeys and packs files (which may differ from the
// manifest, to test mismatches).
func bundle(t testing.TB, m *Manifest, files map[string]string, skeys ...string) []byte {
	t.Helper()
	signed, err := Sign(m, skeys...)
	if err != nil {
		t.Fatal(err)
	}
	return pack(t, signed, files)
}

func pack(t testing.TB, signed []byte, files map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	writeTar(t, &b, signed, files)
	return b.Bytes()
}

// fakeApplier records applies; bad content fails validation.
type fakeApplier struct {
	mu      sync.Mutex
	applied []string // generation names, "" for base
	failOn  string   // Apply fails for a config containing this
}

func (a *fakeApplier) read(g *Generation) (string, error) {
	if g == nil {
		return "base", nil
	}
	b, err := os.ReadFile(g.Path(ConfigFile))
	return string(b), err
}

func (a *fakeApplier) Validate(_ context.Context, g *Generation) error {
	c, err := a.read(g)
	if err != nil {
		return err
	}
	if strings.Contains(c, "invalid") {
		return errors.New("gateway.yaml: connectors[0].kind: unknown kind")
	}
	return nil
}

func (a *fakeApplier) Apply(_ context.Context, g *Generation) error {
	c, err := a.read(g)
	if err != nil {
		return err
	}
	if a.failOn != "" && strings.Contains(c, a.failOn) {
		return errors.New("apply failed")
	}
	a.mu.Lock()
	a.applied = append(a.applied, g.name())
	a.mu.Unlock()
	return nil
}

func (a *fakeApplier) last() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.applied) == 0 {
		return "<none>"
	}
	return a.applied[len(a.applied)-1]
}

// healthFunc is a HealthCheck from a function.
type healthFunc func() error

func (healthFunc) Baseline(context.Context)      {}
func (h healthFunc) Check(context.Context) error { return h() }

// snapshot lists a directory tree with file contents.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() {
			out[rel+"/"] = ""
			return nil
		}
		b, err := os.ReadFile(p)
		out[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func newTestUpdater(t testing.TB, dir string, tr Trust, a Applier, opts ...Option) *Updater {
	t.Helper()
	opts = append([]Option{WithClock(func() time.Time { return testNow }, 5*time.Minute), WithProbation(30*time.Millisecond, 5*time.Millisecond)}, opts...)
	u, err := New(dir, tr, a, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// writeTar writes an archive with the manifest first and files as named,
// unchecked.
func writeTar(t testing.TB, w *bytes.Buffer, signed []byte, files map[string]string) {
	t.Helper()
	tw := tar.NewWriter(w)
	add := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	add(ManifestName, signed)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		add(n, []byte(files[n]))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}
