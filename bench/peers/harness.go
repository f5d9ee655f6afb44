package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// config is one harness run.
type config struct {
	n              int      // messages per run
	devices        []int    // device counts, one series each
	rounds         int      // rounds per device count; peers alternate
	window         int      // QoS 1 messages in flight per device
	peers          []string // peer names, in the order of round 1
	timeout        time.Duration
	stall          time.Duration // a run with no new message for this long ends
	probeTimeout   time.Duration // bound on the wait for a probe to come through
	warmup         int           // messages sent through the path before the measured run
	moduleDir      string
	cacheDir       string
	nodeREDVersion string
	mosquitto      string
	tmpDir         string // "" : a new temporary directory
	keep           bool   // keep the temporary directory
}

type harness struct {
	cfg config
	ps  *procs
	tmp string
	out io.Writer // progress lines

	buildOnce   sync.Once
	gatewaydBin string
	buildErr    error

	nodeREDOnce sync.Once
	redJS       string
	nodeREDErr  error
}

// result is one peer's figures for one run.
type result struct {
	peer    peer
	devices int
	round   int
	err     error // the peer did not start or the run failed

	received int // distinct ids
	lost     int
	dups     int
	stray    int // messages without a valid id
	rate     float64
	// CPU per message in the 10-90 % window; negative when unknown.
	fwdCPU, aCPU, bCPU float64
	// selfCPU is the harness's own (devices and consumer) in the window.
	selfCPU float64
	// CPU per message received over the whole run, from the devices'
	// first message to the last one received (or the end of the run);
	// negative when unknown.
	fwdAll, aAll float64
	rss          int64 // forwarder's VmHWM, bytes; 0 when none
	load         string
	note         string
}

// runHarness runs every peer for every device count and round and returns
// the results in run order.
func runHarness(ctx context.Context, cfg config, out io.Writer) ([]result, error) {
	for _, name := range cfg.peers {
		if _, ok := peerByName(name); !ok {
			return nil, fmt.Errorf("unknown peer %q", name)
		}
	}
	h := &harness{cfg: cfg, ps: newProcs(), out: out}
	defer h.ps.stopAll()
	h.tmp = cfg.tmpDir
	if h.tmp == "" {
		d, err := os.MkdirTemp("", "iotgw-peers-")
		if err != nil {
			return nil, err
		}
		h.tmp = d
		if !cfg.keep {
			defer os.RemoveAll(d)
		} else {
			fmt.Fprintf(out, "keeping %s\n", d)
		}
	}
	// Build and install before the first run, outside its timeout.
	for _, name := range cfg.peers {
		var err error
		switch name {
		case "gw-listener", "gw-client", "gw-edge":
			_, err = h.gatewayd(ctx)
		case "nodered":
			_, err = h.nodeRED(ctx)
		}
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(out, "%s will fail: %v\n", name, err)
		}
	}
	var res []result
	for _, d := range cfg.devices {
		for round := 1; round <= cfg.rounds; round++ {
			for i := range cfg.peers {
				// Alternate: each round starts one peer further on.
				p, _ := peerByName(cfg.peers[(i+round-1)%len(cfg.peers)])
				if ctx.Err() != nil {
					return res, ctx.Err()
				}
				r := h.runOne(ctx, p, d, round)
				res = append(res, r)
				fmt.Fprintln(out, progressLine(r))
			}
		}
	}
	return res, ctx.Err()
}

func progressLine(r result) string {
	if r.err != nil {
		return fmt.Sprintf("devices=%d round=%d %s: FAILED: %v", r.devices, r.round, r.peer.name, r.err)
	}
	return fmt.Sprintf("devices=%d round=%d %s: %.0f msg/s, µs/msg in 10-90 %%: fwd %s, broker A %s, broker B %s, harness %s; whole run: fwd %s, broker A %s; received %d lost %d dup %d %s",
		r.devices, r.round, r.peer.name, r.rate, us(r.fwdCPU), us(r.aCPU), us(r.bCPU), us(r.selfCPU), us(r.fwdAll), us(r.aAll), r.received, r.lost, r.dups, r.note)
}

// The points of a run where marks samples the clocks.
const (
	markStart = iota // the devices start publishing
	mark10           // 10 % of the distinct ids received
	mark90           // 90 %
	markEnd          // the run ended
	numMarks
)

// marks samples the clocks at the points of a run. A forwarder that acks
// and buffers (Node-RED) takes most of what broker A sends it before the
// 10 % mark, so the 10-90 % window alone misses broker A's share: the
// whole run, markStart to markEnd, counts it.
type marks struct {
	mu   sync.Mutex
	pids [4]int // forwarder, broker A, broker B, the harness; 0: none
	at   [numMarks]time.Time
	cpu  [numMarks][4]time.Duration
	ok   [numMarks][4]bool
}

func (m *marks) setPIDs(fwd, a, b int) {
	m.mu.Lock()
	m.pids = [4]int{fwd, a, b, os.Getpid()}
	m.mu.Unlock()
}

func (m *marks) sample(k int) {
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.at[k] = now
	for i, pid := range m.pids {
		if pid == 0 {
			continue
		}
		if c, err := cpuTime(pid); err == nil {
			m.cpu[k][i], m.ok[k][i] = c, true
		}
	}
}

func (h *harness) runOne(ctx context.Context, p peer, devices, round int) (res result) {
	res = result{peer: p, devices: devices, round: round, fwdCPU: -1, aCPU: -1, bCPU: -1, selfCPU: -1, fwdAll: -1, aAll: -1}
	defer func() { res.load = loadAvg() }()
	dir := filepath.Join(h.tmp, fmt.Sprintf("d%d-r%d-%s", devices, round, p.name))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		res.err = err
		return res
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, h.cfg.timeout)
	defer cancel()

	brokerB, addrB, err := startMosquitto(ctx, h.ps, h.cfg.mosquitto, dir, "broker-b")
	if err != nil {
		res.err = fmt.Errorf("broker B: %w", err)
		return res
	}
	defer h.ps.stop(brokerB, 3*time.Second)
	env := &runEnv{h: h, dir: dir, brokerB: addrB}
	var brokerA *proc
	if p.needsA {
		brokerA, env.brokerA, err = startMosquitto(ctx, h.ps, h.cfg.mosquitto, dir, "broker-a")
		if err != nil {
			res.err = fmt.Errorf("broker A: %w", err)
			return res
		}
		defer h.ps.stop(brokerA, 3*time.Second)
	}

	n := h.cfg.n
	cons, err := newConsumer(addrB, n, h.cfg.warmup)
	if err != nil {
		res.err = fmt.Errorf("consumer: %w", err)
		return res
	}
	defer cons.close()
	go cons.run()

	fwd, entry, err := p.start(ctx, env)
	if err != nil {
		res.err = err
		return res
	}
	defer h.ps.stop(fwd, 5*time.Second)
	if err := probe(ctx, entry, cons, fwd, h.cfg.probeTimeout); err != nil {
		res.err = err
		return res
	}
	if err := warmUp(ctx, entry, cons, n, h.cfg.warmup, h.cfg.window, h.cfg.stall); err != nil {
		res.err = fmt.Errorf("warm-up: %w", err)
		return res
	}
	pid := func(p *proc) int {
		if p == nil {
			return 0
		}
		return p.pid()
	}
	cons.m.setPIDs(pid(fwd), pid(brokerA), pid(brokerB))

	pubs, err := connectDevices(ctx, entry, devices, n, h.cfg.window)
	if err != nil {
		res.err = fmt.Errorf("devices: %w", err)
		return res
	}
	var wg sync.WaitGroup
	var (
		pubMu  sync.Mutex
		pubErr error // the first device's error
	)
	cons.m.sample(markStart)
	for _, pb := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pb.run(ctx); err != nil && ctx.Err() == nil {
				pubMu.Lock()
				if pubErr == nil {
					pubErr = err
				}
				pubMu.Unlock()
			}
		}()
	}
	defer func() {
		for _, pb := range pubs {
			pb.rc.close()
		}
		wg.Wait()
	}()

	// Wait for every id, a stall, the timeout or the forwarder's exit.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last, lastAt := 0, time.Now()
wait:
	for {
		select {
		case <-cons.done:
			break wait
		case <-ctx.Done():
			res.note = "timeout after " + h.cfg.timeout.String()
			if parent.Err() != nil {
				res.note = "interrupted"
			}
			break wait
		case <-tick.C:
			if got := int(cons.unique.Load()); got != last {
				last, lastAt = got, time.Now()
			} else if time.Since(lastAt) > h.cfg.stall {
				res.note = fmt.Sprintf("stalled: nothing new for %v", h.cfg.stall)
				break wait
			}
			if fwd != nil && fwd.exited() {
				res.note = fmt.Sprintf("forwarder exited: %v", fwd.err)
				break wait
			}
		}
	}
	cons.m.sample(markEnd)
	// Late duplicates arrive soon after the last new id, if at all.
	time.Sleep(300 * time.Millisecond)
	pubMu.Lock()
	if pubErr != nil && res.note == "" {
		res.note = "device error: " + pubErr.Error()
	}
	pubMu.Unlock()
	if fwd != nil {
		if v, err := peakRSS(fwd.pid()); err == nil {
			res.rss = v
		}
	}
	cons.close()
	res.received, res.lost, res.dups, res.stray = cons.tally()
	cons.m.mu.Lock()
	defer cons.m.mu.Unlock()
	m := &cons.m
	per := func(from, to, i int, msgs float64) float64 {
		if !m.ok[from][i] || !m.ok[to][i] || msgs <= 0 {
			return -1
		}
		return float64(m.cpu[to][i]-m.cpu[from][i]) / float64(time.Microsecond) / msgs
	}
	res.fwdAll, res.aAll = per(markStart, markEnd, 0, float64(res.received)), per(markStart, markEnd, 1, float64(res.received))
	k10, k90 := markCounts(n)
	if m.at[mark90].IsZero() || k90 == k10 {
		return res
	}
	msgs := float64(k90 - k10)
	res.rate = msgs / m.at[mark90].Sub(m.at[mark10]).Seconds()
	res.fwdCPU, res.aCPU, res.bCPU = per(mark10, mark90, 0, msgs), per(mark10, mark90, 1, msgs), per(mark10, mark90, 2, msgs)
	res.selfCPU = per(mark10, mark90, 3, msgs)
	return res
}

// markCounts returns the distinct-id counts at which the 10 % and 90 %
// marks are taken.
func markCounts(n int) (int, int) { return max(1, n/10), max(1, n*9/10) }

// probe publishes a probe message to entry until the consumer sees one
// come out of the far broker: the peer is then connected and subscribed on
// both sides.
func probe(ctx context.Context, entry string, cons *consumer, fwd *proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var rc *rawConn
	defer func() {
		if rc != nil {
			rc.close()
		}
	}()
	var id uint16
	var lastErr error
	for {
		if rc == nil {
			if c, err := dialMQTT(entry, "probe", 4096, 4096, 2*time.Second); err == nil {
				rc = c
				go func() { // read and drop the PUBACKs
					for {
						if _, _, err := c.next(); err != nil {
							return
						}
					}
				}()
			} else {
				lastErr = err
			}
		}
		if rc != nil {
			id++
			rc.writePublish("devices/probe/env", id|1, probePayload)
			if err := rc.w.Flush(); err != nil {
				lastErr = err
				rc.close()
				rc = nil
			}
		}
		select {
		case <-cons.probed:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		if fwd != nil && fwd.exited() {
			return fmt.Errorf("%s exited (%v) before it forwarded anything:\n%s", fwd.name, fwd.err, fwd.tail())
		}
		if time.Now().After(deadline) {
			msg := fmt.Sprintf("nothing came through within %v", timeout)
			if lastErr != nil {
				msg += fmt.Sprintf(" (last error: %v)", lastErr)
			}
			if fwd != nil {
				msg += ":\n" + fwd.tail()
			}
			return errors.New(msg)
		}
	}
}

// warmUp sends warm messages (ids n to n+warm-1) through the path from
// one device and waits until the consumer got them all, so that the
// measured run starts with the forwarder's code paths warm (a JIT
// compiler's, the Go runtime's heap) and its connections settled.
func warmUp(ctx context.Context, entry string, cons *consumer, n, warm, window int, stall time.Duration) error {
	if warm <= 0 {
		return nil
	}
	rc, err := dialMQTT(entry, "warm", 4096, 16<<10, 10*time.Second)
	if err != nil {
		return err
	}
	dv := &device{rc: rc, name: "warm", topic: "devices/warm/env", window: window}
	for id := n; id < n+warm; id++ {
		dv.ids = append(dv.ids, id)
	}
	errc := make(chan error, 1)
	go func() { errc <- dv.run(ctx) }()
	defer func() {
		rc.close()
		<-errc
	}()
	last, lastAt := int64(0), time.Now()
	for {
		got := cons.warmed.Load()
		if got >= int64(warm) {
			return nil
		}
		if got != last {
			last, lastAt = got, time.Now()
		} else if time.Since(lastAt) > stall {
			return fmt.Errorf("%d of %d messages came through, then nothing for %v", got, warm, stall)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// consumer subscribes to everything on broker B and counts ids.
type consumer struct {
	rc     *rawConn
	n      int
	counts []uint16 // per id; only the run goroutine touches it until done
	unique atomic.Int64
	warm   int          // ids n to n+warm-1 are the warm-up's
	warmed atomic.Int64 // warm-up messages received
	stray  int
	probed chan struct{}
	done   chan struct{} // closed when every id arrived
	exited chan struct{} // closed when run returns
	m      marks
	once   sync.Once
}

func newConsumer(addr string, n, warm int) (*consumer, error) {
	rc, err := dialMQTT(addr, "peers-consumer", 1<<20, 64<<10, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if err := rc.subscribe("#", 5*time.Second); err != nil {
		rc.close()
		return nil, err
	}
	return &consumer{rc: rc, n: n, warm: warm, counts: make([]uint16, n), probed: make(chan struct{}, 1),
		done: make(chan struct{}), exited: make(chan struct{})}, nil
}

func (c *consumer) run() {
	defer close(c.exited)
	k10, k90 := markCounts(c.n)
	unique := 0
	for {
		if c.rc.r.Buffered() == 0 {
			if err := c.rc.w.Flush(); err != nil {
				return
			}
		}
		first, body, err := c.rc.next()
		if err != nil {
			return
		}
		if first>>4 != pktPublish {
			continue
		}
		_, pid, payload, err := parsePublish(first, body)
		if err != nil {
			return
		}
		if pid != 0 {
			c.rc.writePuback(pid)
		}
		id, ok := parseID(payload)
		if ok && id >= c.n && id < c.n+c.warm {
			c.warmed.Add(1)
			continue
		}
		if !ok || id >= c.n {
			if isProbe(payload) {
				select {
				case c.probed <- struct{}{}:
				default:
				}
			} else {
				c.stray++
			}
			continue
		}
		if c.counts[id] < 65535 {
			c.counts[id]++
		}
		if c.counts[id] == 1 {
			unique++
			c.unique.Store(int64(unique))
			if unique == k10 {
				c.m.sample(mark10)
			}
			if unique == k90 {
				c.m.sample(mark90)
			}
			if unique == c.n {
				close(c.done)
			}
		}
	}
}

func (c *consumer) close() {
	c.once.Do(func() { c.rc.close() })
	<-c.exited
}

// tally returns distinct ids received, ids lost, duplicate deliveries and
// messages without a valid id. Call it after close.
func (c *consumer) tally() (received, lost, dups, stray int) {
	for _, v := range c.counts {
		switch {
		case v == 0:
			lost++
		default:
			received++
			dups += int(v) - 1
		}
	}
	return received, lost, dups, c.stray
}

// device is one publishing device connection.
type device struct {
	rc     *rawConn
	name   string
	topic  string
	ids    []int
	window int
}

// connectDevices connects d devices to addr; device i publishes ids i,
// i+d, i+2d, ... below n.
func connectDevices(ctx context.Context, addr string, d, n, window int) ([]*device, error) {
	devs := make([]*device, d)
	errs := make([]error, d)
	sem := make(chan struct{}, 32) // connections set up at once
	var wg sync.WaitGroup
	for i := range devs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := "d" + strconv.Itoa(i)
			rc, err := dialMQTT(addr, name, 4096, 16<<10, 10*time.Second)
			if err != nil {
				errs[i] = fmt.Errorf("%s: %w", name, err)
				return
			}
			dv := &device{rc: rc, name: name, topic: "devices/" + name + "/env", window: window}
			for id := i; id < n; id += d {
				dv.ids = append(dv.ids, id)
			}
			devs[i] = dv
		}()
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		for _, dv := range devs {
			if dv != nil {
				dv.rc.close()
			}
		}
		return nil, err
	}
	return devs, nil
}

// run publishes the device's ids at QoS 1 with at most window
// unacknowledged, and returns once every PUBACK arrived.
func (dv *device) run(ctx context.Context) error {
	slots := make(chan struct{}, dv.window)
	acked := make(chan error, 1)
	go func() {
		got := 0
		for got < len(dv.ids) {
			first, _, err := dv.rc.next()
			if err != nil {
				acked <- err
				return
			}
			if first>>4 == pktPuback {
				got++
				<-slots
			}
		}
		acked <- nil
	}()
	var buf []byte
	var pid uint16
	for _, id := range dv.ids {
		select {
		case slots <- struct{}{}:
		default:
			if err := dv.rc.w.Flush(); err != nil {
				return err
			}
			select {
			case slots <- struct{}{}:
			case err := <-acked:
				if err == nil {
					err = errors.New("acknowledged more than was sent")
				}
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		pid++
		if pid == 0 {
			pid = 1
		}
		buf = appendPayload(buf[:0], id, dv.name)
		dv.rc.writePublish(dv.topic, pid, buf)
	}
	if err := dv.rc.w.Flush(); err != nil {
		return err
	}
	select {
	case err := <-acked:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
