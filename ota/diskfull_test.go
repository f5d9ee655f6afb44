package ota

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/iotgw/gateway/internal/testenv"
)

// TestDiskFullWhileStaging puts the state directory on a 256 KiB tmpfs
// and offers a bundle that does not fit: staging fails with a clear error
// (no space left on device), the half-written generation is removed, the
// old generation keeps running, and a bundle that fits installs next.
func TestDiskFullWhileStaging(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		testenv.Skip(t, fmt.Sprintf("cannot mount a tmpfs: %v: %s", err, out))
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	k := newKeyring(t, "alice")
	a := &fakeApplier{}
	u := newTestUpdater(t, dir, k.trust(1), a)
	v1 := map[string]string{ConfigFile: goodCfg}
	if err := u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(1, v1), v1, k.skeys...))); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	big := map[string]string{ConfigFile: goodCfg, "codecs/layout.bin": strings.Repeat("x", 400<<10)}
	err := u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(2, big), big, k.skeys...)))
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "staging gen-2 (version 2)") {
		t.Fatalf("got %v, want a staging error wrapping ENOSPC", err)
	}
	t.Logf("error: %v", err)
	if after := snapshot(t, dir); len(after) != len(before) {
		t.Fatalf("disk changed: %v -> %v", keys(before), keys(after))
	}
	if st := u.Status(); st.Current != "gen-1" || st.Version != 1 || a.last() != "gen-1" || u.Stats().Rejected["no_space"] != 1 {
		t.Fatalf("after the full disk: %+v, applied %v, stats %+v", st, a.applied, u.Stats())
	}
	v3 := map[string]string{ConfigFile: "connectors: [] # 3\n"}
	if err := u.Update(context.Background(), bytes.NewReader(bundle(t, manifest(3, v3), v3, k.skeys...))); err != nil {
		t.Fatalf("a bundle that fits: %v", err)
	}
}
