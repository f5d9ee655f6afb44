package shaping

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	vnl "github.com/vishvananda/netlink"

	gateway "github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/nstest"
	"github.com/iotgw/gateway/internal/testenv"
)

// tcState lists the shaper's clsact filters and root qdisc type on link.
func tcState(t *testing.T, link string) (filters []string, root string) {
	t.Helper()
	l, err := vnl.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	for _, parent := range []uint32{vnl.HANDLE_MIN_EGRESS, vnl.HANDLE_MIN_INGRESS} {
		fs, _ := vnl.FilterList(l, parent)
		for _, f := range fs {
			if bf, ok := f.(*vnl.BpfFilter); ok {
				filters = append(filters, bf.Name)
			}
		}
	}
	qs, err := vnl.QdiscList(l)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if q.Attrs().Parent == vnl.HANDLE_ROOT {
			root = q.Type()
		}
	}
	return filters, root
}

// TestCrashLeftoversCleaned leaves what a crashed run leaves (legacy clsact
// filters holding their programs, a root HTB) and checks that New removes
// it before attaching and Close leaves the interface clean.
func TestCrashLeftoversCleaned(t *testing.T) {
	p := newPair(t)
	nstest.MustDo(t, p.A.NS, func() error {
		// The "crashed" shaper: attach, then drop every handle without
		// Close, as process death would.
		crashed, err := New(Config{Attach: "clsact"})
		if err != nil {
			return err
		}
		crashed.mu.Lock() // the sampling goroutine reads cfg
		cfg := crashed.cfg
		crashed.mu.Unlock()
		cfg.Interface, cfg.Attach = p.A.Link, "clsact"
		if err := crashed.Update(cfg); err != nil {
			return err
		}
		crashed.tc.createdClsact = false // as if the process died
		crashed.attach = ""              // Close must not clean up
		if err := crashed.Close(); err != nil {
			return err
		}
		filters, root := tcState(t, p.A.Link)
		if len(filters) != 2 || root != "htb" {
			t.Fatalf("leftovers %v, root %q; want two filters and htb", filters, root)
		}

		s, err := New(Config{Interface: p.A.Link, Attach: "clsact"})
		if err != nil {
			return err
		}
		filters, root = tcState(t, p.A.Link)
		if len(filters) != 2 || root != "htb" {
			t.Errorf("after New: filters %v, root %q; want exactly our two filters and htb", filters, root)
		}
		if err := s.Close(); err != nil {
			return err
		}
		filters, root = tcState(t, p.A.Link)
		if len(filters) != 0 || root == "htb" {
			t.Errorf("after Close: filters %v, root %q; want none", filters, root)
		}
		return nil
	})
}

// TestApplyPolicy drives the shaper through the gateway.Shaper interface:
// attach on first Apply, change rates in place, refuse another interface.
func TestApplyPolicy(t *testing.T) {
	p := newPair(t)
	s := shaperIn(t, p.A.NS, Config{Egress: "htb"})
	pol := gateway.Policy{Interface: p.A.Link, SampleEvery: 500, Classes: []gateway.TrafficClass{
		{Name: "voice", DSCP: []uint8{46}, Handle: 2<<16 | 0x10, RateBits: 1_000_000},
		{Name: "bulk", DSCP: []uint8{0}, Handle: 2<<16 | 0x20, RateBits: 5_000_000, Remark: 8},
	}}
	var gs gateway.Shaper = s
	nstest.MustDo(t, p.A.NS, func() error {
		if err := gs.Apply(t.Context(), pol); err != nil {
			return err
		}
		pol.Classes[1].RateBits = 7_000_000
		if err := gs.Apply(t.Context(), pol); err != nil {
			return err
		}
		l, err := vnl.LinkByName(p.A.Link)
		if err != nil {
			return err
		}
		cls, err := vnl.ClassList(l, vnl.MakeHandle(2, 0))
		if err != nil {
			return err
		}
		var found bool
		for _, c := range cls {
			if h, ok := c.(*vnl.HtbClass); ok && h.Handle == vnl.MakeHandle(2, 0x20) {
				found = true
				if h.Rate != 7_000_000/8 {
					t.Errorf("bulk rate %d B/s after Apply, want %d", h.Rate, 7_000_000/8)
				}
			}
		}
		if !found {
			t.Error("HTB class 2:20 missing")
		}
		return nil
	})
	if st, _ := s.Stats(); st.SampleEvery != 500 || st.Classes[1].Handle != 2<<16|0x20 {
		t.Errorf("stats %+v: want sampling 1:500 and bulk at 2:20", st)
	}
	pol.Interface = "lo"
	if err := s.Apply(t.Context(), pol); err == nil {
		t.Error("Apply moved the shaper to another interface")
	}
}

// TestNotSupportedWithoutPrivileges runs New as an unprivileged user in a
// child process: it must fail with an error wrapping
// gateway.ErrNotSupported that names what is missing.
func TestNotSupportedWithoutPrivileges(t *testing.T) {
	if os.Getenv("SHAPING_UNPRIVILEGED_CHILD") == "1" {
		_, err := New(Config{})
		if err == nil {
			os.Exit(3)
		}
		if !errors.Is(err, gateway.ErrNotSupported) || !errors.Is(err, ErrNotSupported) {
			os.Stderr.WriteString("wrong error: " + err.Error())
			os.Exit(4)
		}
		os.Stderr.WriteString(err.Error())
		os.Exit(0)
	}
	testenv.RequireRoot(t)
	// The test binary lives in a directory only root may enter; give the
	// child a copy it can execute.
	dir := t.TempDir()
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "shaping.test")
	if err := os.WriteFile(exe, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe, "-test.run=^TestNotSupportedWithoutPrivileges$")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SHAPING_UNPRIVILEGED_CHILD=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged New: %v: %s", err, out)
	}
	msg := string(out)
	t.Logf("unprivileged New: %s", msg)
	if !strings.Contains(msg, "not supported") || !(strings.Contains(msg, "root") || strings.Contains(msg, "CAP_")) {
		t.Errorf("error %q does not say what is missing", msg)
	}
}

// TestEgressNoneLeavesRootQdisc: with egress "none" the shaper classifies
// and counts but never touches a root qdisc someone else installed.
func TestEgressNoneLeavesRootQdisc(t *testing.T) {
	p := newPair(t)
	nstest.MustDo(t, p.A.NS, func() error {
		l, err := vnl.LinkByName(p.A.Link)
		if err != nil {
			return err
		}
		theirs := vnl.NewHtb(vnl.QdiscAttrs{LinkIndex: l.Attrs().Index, Parent: vnl.HANDLE_ROOT, Handle: vnl.MakeHandle(1, 0)})
		if err := vnl.QdiscAdd(theirs); err != nil {
			return err
		}
		s, err := New(Config{Interface: p.A.Link, Egress: "none"})
		if err != nil {
			return err
		}
		if _, root := tcState(t, p.A.Link); root != "htb" {
			t.Errorf("after New: root %q, want the existing htb", root)
		}
		if err := s.Close(); err != nil {
			return err
		}
		if _, root := tcState(t, p.A.Link); root != "htb" {
			t.Errorf("after Close: root %q, want the existing htb", root)
		}
		return nil
	})
}
