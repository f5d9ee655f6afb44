package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotgw/gateway/ota"
)

type nopApplier struct{}

func (nopApplier) Validate(context.Context, *ota.Generation) error { return nil }
func (nopApplier) Apply(context.Context, *ota.Generation) error    { return nil }

// install runs an update whose bundle carries app as bin/app through an
// Updater with the slot hooks; probe decides the probation.
func install(t *testing.T, s *Slots, state string, v uint64, app string, probe error) error {
	t.Helper()
	skey, vkey, _ := ota.GenerateKey("ops")
	m := &ota.Manifest{Name: "app", Version: v, Created: time.Now().Add(-time.Minute), Expires: time.Now().Add(time.Hour),
		Files: []ota.File{ota.FileOf(AppFile, []byte(app))}}
	signed, err := ota.Sign(m, skey)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	(&ota.Bundle{Signed: signed, Files: map[string][]byte{AppFile: []byte(app)}}).Write(&buf)
	u, err := ota.New(state, ota.Trust{Keys: []string{vkey}, Threshold: 1}, nopApplier{},
		ota.WithProbation(50*time.Millisecond, 10*time.Millisecond), ota.WithHooks(s, probeErr{probe}))
	if err != nil {
		t.Fatal(err)
	}
	return u.Update(context.Background(), &buf)
}

type probeErr struct{ err error }

func (p probeErr) Probe(context.Context, *ota.Generation) error { return p.err }

func slotOf(t *testing.T, s *Slots) (string, Record) {
	t.Helper()
	exe, r, err := s.Boot()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(exe)
	return string(b), r
}

func TestABCommit(t *testing.T) {
	dir := t.TempDir()
	s := &Slots{Dir: dir, MaxStarts: 2}
	if err := install(t, s, filepath.Join(dir, "ota"), 1, "v1", nil); err != nil {
		t.Fatal(err)
	}
	if app, r := slotOf(t, s); app != "v1" || r.Pending {
		t.Fatalf("after commit: %q %+v", app, r)
	}
}

func TestABProbationFailureRestores(t *testing.T) {
	dir := t.TempDir()
	s := &Slots{Dir: dir, MaxStarts: 2}
	if err := install(t, s, filepath.Join(dir, "ota"), 1, "v1", nil); err != nil {
		t.Fatal(err)
	}
	err := install(t, s, filepath.Join(dir, "ota"), 2, "v2", errors.New("crash loop"))
	var rb *ota.RollbackError
	if !errors.As(err, &rb) {
		t.Fatalf("got %v", err)
	}
	if app, _ := slotOf(t, s); app != "v1" {
		t.Fatalf("after rollback: %q", app)
	}
}

// TestABBootCounter: a new executable that never marks itself good (it
// dies before its probation ends, so no hook runs) is undone by the
// launcher after MaxStarts starts.
func TestABBootCounter(t *testing.T) {
	dir := t.TempDir()
	s := &Slots{Dir: dir, MaxStarts: 2}
	os.MkdirAll(filepath.Join(dir, "a"), 0o755)
	os.WriteFile(filepath.Join(dir, "a", "app"), []byte("v1"), 0o755)
	g := &ota.Generation{Name: "gen-2", Dir: dir, Manifest: &ota.Manifest{}}
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	os.WriteFile(filepath.Join(dir, "bin", "app"), []byte("v2"), 0o755)
	if err := s.PreApply(context.Background(), nil, g); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for i := 0; i < 4; i++ {
		app, _ := slotOf(t, s)
		seen = append(seen, app)
	}
	if got := strings.Join(seen, " "); got != "v2 v2 v1 v1" {
		t.Fatalf("starts ran %s, want v2 v2 v1 v1", got)
	}
	var out bytes.Buffer
	if err := run([]string{"status", "-dir", dir}, &out); err != nil || !strings.Contains(out.String(), `"active":"a"`) {
		t.Fatalf("status %q %v", out.String(), err)
	}
}
