package shaping

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	gateway "github.com/iotgw/gateway"
)

// ErrNotSupported wraps gateway.ErrNotSupported: the kernel or the
// process's privileges lack what shaping needs. The error returned by New
// says what is missing; the gateway can run on without shaping.
var ErrNotSupported = fmt.Errorf("shaping: %w", gateway.ErrNotSupported)

var _ gateway.Shaper = (*Shaper)(nil)

const (
	noRemark   = 0xff
	slotOther  = MaxClasses
	slots      = MaxClasses + 1
	modeHTB    = 0
	modeEDT    = 1
	edtHorizon = 2 * time.Second
	// eventQueue bounds the Events channel; when the reader falls behind,
	// newer events are dropped and counted in Stats.EventsDropped.
	eventQueue = 4096
)

// Direction is egress (sent) or ingress (received).
type Direction uint8

// Directions.
const (
	Egress Direction = iota
	Ingress
)

func (d Direction) String() string {
	if d == Ingress {
		return "ingress"
	}
	return "egress"
}

// objects are the kernel objects of either build of bpf/shaper.c.
type objects struct {
	ClassifyEgress  *ebpf.Program `ebpf:"classify_egress"`
	ClassifyIngress *ebpf.Program `ebpf:"classify_ingress"`
	Buckets         *ebpf.Map     `ebpf:"buckets"`
	ClassCfg        *ebpf.Map     `ebpf:"class_cfg"`
	Counters        *ebpf.Map     `ebpf:"counters"`
	DscpClass       *ebpf.Map     `ebpf:"dscp_class"`
	Events          *ebpf.Map     `ebpf:"events"`
	SampleState     *ebpf.Map     `ebpf:"sample_state"`
	Settings        *ebpf.Map     `ebpf:"settings"`
}

func (o *objects) close() {
	for _, c := range []interface{ Close() error }{o.ClassifyEgress, o.ClassifyIngress, o.Buckets,
		o.ClassCfg, o.Counters, o.DscpClass, o.Events, o.SampleState, o.Settings} {
		if c != nil {
			_ = c.Close()
		}
	}
}

// Shaper classifies, shapes, polices and samples the traffic of one
// interface with tc BPF programs. It is safe for concurrent use. Create it
// with New, change it with Apply or Update, and Close it to detach
// everything it installed.
type Shaper struct {
	mu      sync.Mutex
	cfg     Config
	objs    objects
	events  string // "ringbuf" or "perf"
	attach  string // "tcx" or "clsact", empty until attached
	egress  string // "htb", "edt" or "none"
	ifindex int
	ifname  string
	tc      *tcControl
	links   []link.Link
	// egressReady is set once the egress qdisc and classes exist.
	egressReady bool
	sampler     *Sampler
	every       atomic.Uint32
	eventsCh    chan Event
	dropped     atomic.Uint64

	cancel context.CancelFunc
	wg     sync.WaitGroup
	closer []func() error // event reader, route watcher
	closed bool
}

// New loads the BPF programs (running the verifier) and, when
// cfg.Interface is set, attaches them and applies cfg. It must run in the
// network namespace of the interface; sockets it opens stay there.
//
// New raises RLIMIT_MEMLOCK of the process on kernels that still charge BPF
// memory to it. Without CAP_BPF/CAP_NET_ADMIN, or on a kernel without tc BPF
// programs, it returns an error wrapping ErrNotSupported that says what is
// missing.
func New(cfg Config) (*Shaper, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; raising it
	// fails without privileges, which the load below reports better.
	memlockErr := rlimit.RemoveMemlock()
	if err := features.HaveProgramType(ebpf.SchedCLS); errors.Is(err, ebpf.ErrNotSupported) {
		return nil, fmt.Errorf("%w: kernel has no tc BPF programs (sched_cls): %v", ErrNotSupported, err)
	}
	s := &Shaper{cfg: cfg.clone(), eventsCh: make(chan Event, eventQueue)}
	if err := s.load(); err != nil {
		if memlockErr != nil {
			return nil, fmt.Errorf("%w (raising RLIMIT_MEMLOCK also failed: %v)", err, memlockErr)
		}
		return nil, err
	}
	tc, err := newTCControl()
	if err != nil {
		s.objs.close()
		return nil, fmt.Errorf("%w: rtnetlink: %v", ErrNotSupported, err)
	}
	s.tc = tc
	s.sampler = NewSampler(cfg.Sampling)
	if err := s.startReaders(); err != nil {
		s.Close()
		return nil, err
	}
	if cfg.Interface != "" {
		if err := s.Update(cfg); err != nil {
			s.Close()
			return nil, err
		}
	}
	return s, nil
}

func (s *Shaper) load() error {
	mode := s.cfg.Events
	auto := mode == "" || mode == "auto"
	if auto {
		mode = "ringbuf"
		if features.HaveMapType(ebpf.RingBuf) != nil {
			mode = "perf"
		}
	}
	err := s.loadVariant(mode)
	if err != nil && auto && mode == "ringbuf" && !errors.Is(err, ErrNotSupported) {
		// Kernels 5.8-5.11 have ring buffers but not the BPF atomics the
		// ring buffer build uses; the perf build needs neither.
		if perr := s.loadVariant("perf"); perr == nil {
			mode, err = "perf", nil
		}
	}
	if err != nil {
		return err
	}
	s.events = mode
	return nil
}

func (s *Shaper) loadVariant(mode string) error {
	var spec *ebpf.CollectionSpec
	var err error
	if mode == "ringbuf" {
		spec, err = loadShaper()
	} else {
		spec, err = loadShaperPerf()
	}
	if err != nil {
		return fmt.Errorf("shaping: parse embedded BPF object: %w", err)
	}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		s.objs.close()
		s.objs = objects{}
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
			return fmt.Errorf("%w: load BPF programs needs CAP_BPF and CAP_NET_ADMIN (run as root): %v", ErrNotSupported, err)
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return fmt.Errorf("%w: kernel lacks a BPF feature the programs use (%s events): %v", ErrNotSupported, mode, err)
		}
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("shaping: verifier rejected the %s programs: %+v", mode, ve)
		}
		return fmt.Errorf("shaping: load %s programs: %w", mode, err)
	}
	return nil
}

// Apply enforces p: the first call attaches to p.Interface when New did
// not; later calls change classes, rates and sampling in place. It
// implements gateway.Shaper.
func (s *Shaper) Apply(ctx context.Context, p gateway.Policy) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	cfg := ConfigFromPolicy(p)
	cfg.LinkBits, cfg.Egress, cfg.Attach, cfg.Events = s.cfg.LinkBits, s.cfg.Egress, s.cfg.Attach, s.cfg.Events
	every := cfg.Sampling.Every
	cfg.Sampling = s.cfg.Sampling
	if every != 0 {
		cfg.Sampling.Every = every
	}
	if cfg.Interface == "" {
		cfg.Interface = s.cfg.Interface
	}
	s.mu.Unlock()
	return s.Update(cfg)
}

// Update applies a full Config. Classes, DSCP mapping, rates and re-marking
// change without reattaching; the interface cannot change once attached.
func (s *Shaper) Update(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg = cfg.clone()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("shaping: shaper closed")
	}
	if cfg.Interface == "" {
		return errors.New("shaping: no interface to attach to")
	}
	if s.attach != "" && cfg.Interface != s.ifname {
		return fmt.Errorf("shaping: attached to %s, cannot move to %s (close and create a new shaper)", s.ifname, cfg.Interface)
	}
	if s.attach == "" {
		if err := s.attachTo(cfg); err != nil {
			return err
		}
	}
	old := s.cfg
	s.cfg = cfg
	if err := s.program(cfg); err != nil {
		s.cfg = old
		return err
	}
	if err := s.tc.configureEgress(s.ifindex, s.egress, &cfg, !s.egressReady || classSetChanged(&old, &cfg)); err != nil {
		return fmt.Errorf("shaping: egress %s on %s: %w", s.egress, s.ifname, err)
	}
	s.egressReady = true
	s.sampler.SetConfig(cfg.Sampling)
	return s.writeSettings(s.sampler.Every())
}

func classSetChanged(a, b *Config) bool {
	ca, cb := a.effectiveClasses(), b.effectiveClasses()
	if len(ca) != len(cb) || a.major() != b.major() {
		return true
	}
	for i := range ca {
		if ca[i].minor(i) != cb[i].minor(i) {
			return true
		}
	}
	return false
}

func (s *Shaper) attachTo(cfg Config) error {
	ifc, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return fmt.Errorf("shaping: interface %q: %w", cfg.Interface, err)
	}
	// With egress "none" the root qdisc belongs to someone else.
	if err := s.tc.cleanup(ifc.Index, cfg.major(), cfg.Egress != "none"); err != nil {
		return fmt.Errorf("shaping: clean up leftovers on %s: %w", ifc.Name, err)
	}
	egress := cfg.Egress
	if egress == "" || egress == "auto" {
		egress = "htb"
		if s.tc.haveFQ(ifc.Index, cfg.major()) {
			egress = "edt"
		}
	}
	if egress == "edt" && !s.tc.haveFQ(ifc.Index, cfg.major()) {
		return fmt.Errorf("%w: egress edt needs sch_fq, which this kernel lacks", ErrNotSupported)
	}
	mode := cfg.Attach
	if mode == "" || mode == "auto" || mode == "tcx" {
		links, err := attachTCX(ifc.Index, s.objs.ClassifyEgress, s.objs.ClassifyIngress)
		switch {
		case err == nil:
			s.links, mode = links, "tcx"
		case errors.Is(err, ebpf.ErrNotSupported) && mode != "tcx":
			mode = "clsact"
		default:
			return fmt.Errorf("shaping: attach TCX on %s: %w", ifc.Name, err)
		}
	}
	if mode == "clsact" {
		if err := s.tc.attachClsact(ifc.Index, s.objs.ClassifyEgress, s.objs.ClassifyIngress); err != nil {
			return fmt.Errorf("shaping: attach clsact on %s: %w", ifc.Name, err)
		}
	}
	s.attach, s.egress, s.ifindex, s.ifname = mode, egress, ifc.Index, ifc.Name
	return nil
}

func attachTCX(ifindex int, egress, ingress *ebpf.Program) ([]link.Link, error) {
	le, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: egress,
		Attach: ebpf.AttachTCXEgress, Anchor: link.Head()})
	if err != nil {
		return nil, err
	}
	li, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: ingress,
		Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
	if err != nil {
		le.Close()
		return nil, err
	}
	return []link.Link{le, li}, nil
}

// program writes classes, rates and the DSCP map. Class configs go first so
// a DSCP never points at a class that is not configured yet.
func (s *Shaper) program(cfg Config) error {
	classes := cfg.effectiveClasses()
	major := uint32(cfg.major())
	for i := 0; i < MaxClasses; i++ {
		var v shaperClassCfg
		v.Remark = noRemark
		if i < len(classes) {
			cl := classes[i]
			v.Handle = major<<16 | uint32(cl.minor(i))
			if cl.Remark != nil {
				v.Remark = *cl.Remark
			}
			v.PoliceBps = cl.IngressBits / 8
			v.Burst = cl.IngressBurst
			if v.PoliceBps != 0 && v.Burst == 0 {
				v.Burst = max(v.PoliceBps/50, 3000)
			}
			if v.PoliceBps != 0 {
				v.PolicePsPerByte = 8e12 / cl.IngressBits
				v.BurstNs = v.Burst * v.PolicePsPerByte / 1000
			}
			if s.egress == "edt" && cl.RateBits != 0 {
				v.EdtBps = cl.RateBits / 8
				v.EdtPsPerByte = 8e12 / cl.RateBits
			}
		}
		if err := s.objs.ClassCfg.Put(uint32(i), v); err != nil {
			return fmt.Errorf("shaping: write class %d: %w", i, err)
		}
	}
	def := uint32(cfg.defaultClassIndex())
	var table [64]uint32
	for d := range table {
		table[d] = def
	}
	for i, cl := range classes {
		for _, d := range cl.DSCP {
			table[d] = uint32(i)
		}
	}
	for d, c := range table {
		if err := s.objs.DscpClass.Put(uint32(d), c); err != nil {
			return fmt.Errorf("shaping: write dscp %d: %w", d, err)
		}
	}
	return nil
}

func (s *Shaper) writeSettings(every uint32) error {
	v := shaperSettings{SampleEvery: every, HorizonNs: uint64(edtHorizon)}
	if s.egress == "edt" {
		v.Mode = modeEDT
	}
	if err := s.objs.Settings.Put(uint32(0), v); err != nil {
		return fmt.Errorf("shaping: write settings: %w", err)
	}
	s.every.Store(every)
	return nil
}

// Mode reports how the shaper runs: the hook ("tcx" or "clsact", empty
// before attaching), the egress mechanism ("htb", "edt" or "none") and the
// event transport ("ringbuf" or "perf").
func (s *Shaper) Mode() (attach, egress, events string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attach, s.egress, s.events
}

// Close detaches the programs, removes the qdiscs and filters the shaper
// installed, stops its goroutines and frees the BPF objects.
func (s *Shaper) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()

	if s.cancel != nil {
		s.cancel()
	}
	var errs []error
	for _, c := range s.closer {
		if err := c(); err != nil {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	for _, l := range s.links {
		if err := l.Close(); err != nil {
			errs = append(errs, fmt.Errorf("shaping: detach: %w", err))
		}
	}
	if s.tc != nil {
		if s.attach != "" {
			if err := s.tc.cleanup(s.ifindex, s.cfg.major(), s.egress != "none"); err != nil {
				errs = append(errs, fmt.Errorf("shaping: remove qdiscs on %s: %w", s.ifname, err))
			}
		}
		s.tc.close()
	}
	s.objs.close()
	return errors.Join(errs...)
}

// Cleanup removes what a shaper that died without Close left on the
// interface: its legacy clsact filters and a root HTB or fq qdisc with the
// given major (default 1). TCX links end with their process and need no
// cleanup. New runs this itself before attaching.
func Cleanup(ifname string, major uint16) error {
	ifc, err := net.InterfaceByName(ifname)
	if err != nil {
		return fmt.Errorf("shaping: interface %q: %w", ifname, err)
	}
	if major == 0 {
		major = 1
	}
	tc, err := newTCControl()
	if err != nil {
		return fmt.Errorf("shaping: rtnetlink: %w", err)
	}
	defer tc.close()
	return tc.cleanup(ifc.Index, major, true)
}
