package shaping

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// filterPrefix names the legacy clsact filters the shaper installs, so a
// later run can find and remove leftovers of a crashed one.
const filterPrefix = "shaping_"

// tcControl installs qdiscs, classes and filters over rtnetlink. Its
// sockets belong to the network namespace that was current when it was
// created.
type tcControl struct {
	h             *vnl.Handle
	createdClsact bool
}

func newTCControl() (*tcControl, error) {
	h, err := vnl.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, err
	}
	return &tcControl{h: h}, nil
}

func (t *tcControl) close() { t.h.Close() }

// haveFQ probes for sch_fq by installing it as the root qdisc of the
// interface (which the shaper is about to own anyway) and removing it
// again; a kernel without sch_fq answers ENOENT.
func (t *tcControl) haveFQ(ifindex int, major uint16) bool {
	q := vnl.NewFq(vnl.QdiscAttrs{LinkIndex: ifindex, Parent: vnl.HANDLE_ROOT, Handle: vnl.MakeHandle(major, 0)})
	if err := t.h.QdiscReplace(q); err != nil {
		return false
	}
	_ = t.h.QdiscDel(q)
	return true
}

func (t *tcControl) attachClsact(ifindex int, egress, ingress *ebpf.Program) error {
	q := &vnl.GenericQdisc{QdiscAttrs: vnl.QdiscAttrs{LinkIndex: ifindex, Parent: vnl.HANDLE_CLSACT,
		Handle: vnl.MakeHandle(0xffff, 0)}, QdiscType: "clsact"}
	if err := t.h.QdiscAdd(q); err == nil {
		t.createdClsact = true
	} else if !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add clsact qdisc: %w", err)
	}
	for _, f := range []struct {
		parent uint32
		prog   *ebpf.Program
		name   string
	}{{vnl.HANDLE_MIN_EGRESS, egress, filterPrefix + "egress"}, {vnl.HANDLE_MIN_INGRESS, ingress, filterPrefix + "ingress"}} {
		err := t.h.FilterAdd(&vnl.BpfFilter{
			FilterAttrs: vnl.FilterAttrs{LinkIndex: ifindex, Parent: f.parent, Handle: 1,
				Protocol: unix.ETH_P_ALL, Priority: 1},
			Fd: f.prog.FD(), Name: f.name, DirectAction: true,
		})
		if err != nil {
			return fmt.Errorf("add %s filter: %w", f.name, err)
		}
	}
	return nil
}

// cleanup removes the shaper's clsact filters and, with ownRoot, its root
// HTB or fq qdisc.
func (t *tcControl) cleanup(ifindex int, major uint16, ownRoot bool) error {
	lk, err := t.h.LinkByIndex(ifindex)
	if err != nil {
		return err
	}
	var errs []error
	for _, parent := range []uint32{vnl.HANDLE_MIN_EGRESS, vnl.HANDLE_MIN_INGRESS} {
		fs, err := t.h.FilterList(lk, parent)
		if err != nil {
			continue // no clsact qdisc
		}
		for _, f := range fs {
			if bf, ok := f.(*vnl.BpfFilter); ok && strings.HasPrefix(bf.Name, filterPrefix) {
				if err := t.h.FilterDel(bf); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("delete filter %s: %w", bf.Name, err))
				}
			}
		}
	}
	if t.createdClsact {
		q := &vnl.GenericQdisc{QdiscAttrs: vnl.QdiscAttrs{LinkIndex: ifindex, Parent: vnl.HANDLE_CLSACT,
			Handle: vnl.MakeHandle(0xffff, 0)}, QdiscType: "clsact"}
		if err := t.h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("delete clsact: %w", err))
		}
		t.createdClsact = false
	}
	if !ownRoot {
		return errors.Join(errs...)
	}
	qs, err := t.h.QdiscList(lk)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, q := range qs {
		a := q.Attrs()
		if a.Parent != vnl.HANDLE_ROOT || a.Handle != vnl.MakeHandle(major, 0) {
			continue
		}
		if typ := q.Type(); typ != "htb" && typ != "fq" {
			continue
		}
		if err := t.h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("delete root %s: %w", q.Type(), err))
		}
	}
	return errors.Join(errs...)
}

// configureEgress installs (rebuild) or updates the egress qdisc: a root
// HTB with a parent class at the link rate and one leaf per class, or a
// root fq for EDT pacing.
func (t *tcControl) configureEgress(ifindex int, mode string, cfg *Config, rebuild bool) error {
	major := cfg.major()
	root := vnl.MakeHandle(major, 0)
	switch mode {
	case "none":
		return nil
	case "edt":
		if !rebuild {
			return nil
		}
		q := vnl.NewFq(vnl.QdiscAttrs{LinkIndex: ifindex, Parent: vnl.HANDLE_ROOT, Handle: root})
		return t.h.QdiscReplace(q)
	}
	if rebuild {
		q := vnl.NewHtb(vnl.QdiscAttrs{LinkIndex: ifindex, Parent: vnl.HANDLE_ROOT, Handle: root})
		if err := t.h.QdiscReplace(q); err != nil {
			return fmt.Errorf("root htb %d: : %w", major, err)
		}
	}
	set := t.h.ClassChange
	if rebuild {
		set = t.h.ClassAdd
	}
	link := cfg.linkBits()
	parent := vnl.MakeHandle(major, 1)
	pc := vnl.NewHtbClass(vnl.ClassAttrs{LinkIndex: ifindex, Parent: root, Handle: parent},
		vnl.HtbClassAttrs{Rate: link, Ceil: link, Quantum: quantum(link)})
	if err := set(pc); err != nil {
		return fmt.Errorf("htb class %d:1: %w", major, err)
	}
	for i, cl := range cfg.effectiveClasses() {
		rate := cl.RateBits
		if rate == 0 {
			rate = link
		}
		ceil := max(cl.CeilBits, rate)
		c := vnl.NewHtbClass(vnl.ClassAttrs{LinkIndex: ifindex, Parent: parent, Handle: vnl.MakeHandle(major, cl.minor(i))},
			vnl.HtbClassAttrs{Rate: rate, Ceil: ceil, Prio: uint32(i), Quantum: quantum(rate)})
		if err := set(c); err != nil {
			return fmt.Errorf("htb class %x:%x (%s): %w", major, cl.minor(i), cl.Name, err)
		}
	}
	return nil
}

// quantum is the HTB deficit quantum: about 1 ms at rate, at least one
// full-size frame, at most the kernel's recommended 200000 bytes.
func quantum(bits uint64) uint32 {
	q := bits / 8 / 1000
	return uint32(min(max(q, 1514), 200000))
}
