package ota

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// recorder implements every hook and records the calls.
type recorder struct {
	mu       sync.Mutex
	calls    []string
	failPost bool
	failPre  bool
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
}

func (r *recorder) Verify(_ context.Context, g *Generation) error {
	r.add("verify %d", g.Manifest.Version)
	return nil
}

func (r *recorder) PreApply(_ context.Context, from, to *Generation) error {
	r.add("pre %q->%s", from.name(), to.Name)
	if r.failPre {
		return errors.New("no room in slot b")
	}
	return nil
}

func (r *recorder) PostApply(_ context.Context, g *Generation) error {
	r.add("post %s", g.Name)
	if r.failPost {
		return errors.New("self-test failed")
	}
	return nil
}

func (r *recorder) Probe(context.Context, *Generation) error { return nil }

func (r *recorder) Commit(_ context.Context, g *Generation) error {
	r.add("commit %s", g.Name)
	return nil
}

func (r *recorder) Rollback(_ context.Context, from, to *Generation, reason string) error {
	r.add("rollback %s->%q: %s", from.Name, to.name(), reason)
	return nil
}

func (r *recorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.calls, "; ")
}

func TestHooks(t *testing.T) {
	k := newKeyring(t, "alice")
	files := map[string]string{ConfigFile: goodCfg}
	cases := []struct {
		name           string
		failPre, fail  bool
		want           string
		wantRolledBack bool
	}{
		{"all pass", false, false, `verify 1; pre ""->gen-1; post gen-1; commit gen-1`, false},
		{"post-apply fails", false, true, `verify 1; pre ""->gen-1; post gen-1; rollback gen-1->"": post-apply hook: self-test failed`, true},
		{"pre-apply fails", true, false, `verify 1; pre ""->gen-1; rollback gen-1->"": pre-apply hook: no room in slot b`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := &recorder{failPost: c.fail, failPre: c.failPre}
			a := &fakeApplier{}
			u := newTestUpdater(t, t.TempDir(), k.trust(1), a, WithHooks(r))
			err := u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(1, files), files, k.skeys...)))
			var rb *RollbackError
			if errors.As(err, &rb) != c.wantRolledBack {
				t.Fatalf("got %v", err)
			}
			if got := r.String(); got != c.want {
				t.Fatalf("hooks ran\n %s\nwant\n %s", got, c.want)
			}
			if c.failPre && len(a.applied) != 1 { // only the rollback to the base
				t.Fatalf("applied %v", a.applied)
			}
		})
	}
}
