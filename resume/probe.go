package resume

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// Probe checks one path to the upstream and returns the round-trip time.
type Probe interface {
	Name() string
	Probe(ctx context.Context) (time.Duration, error)
}

// HTTPHeadProbe sends HEAD to URL; any response below 500 counts as up
// (the endpoint answered), 5xx and transport errors as down.
type HTTPHeadProbe struct {
	URL string
	// Client defaults to a client without keep-alives, so each probe
	// measures a fresh connection as a reconnecting sink would.
	Client *http.Client
}

var _ Probe = (*HTTPHeadProbe)(nil)

// Name implements Probe.
func (p *HTTPHeadProbe) Name() string { return "http-head" }

// Probe implements Probe.
func (p *HTTPHeadProbe) Probe(ctx context.Context) (time.Duration, error) {
	c := p.Client
	if c == nil {
		c = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, p.URL, nil)
	if err != nil {
		return 0, fmt.Errorf("http head %s: %w", p.URL, err)
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("http head: %w", err)
	}
	resp.Body.Close()
	rtt := time.Since(start)
	if resp.StatusCode >= 500 {
		return rtt, fmt.Errorf("http head %s: status %d", p.URL, resp.StatusCode)
	}
	return rtt, nil
}

// ICMPProbe sends one ICMP echo to Host (an IPv4 address). It uses an
// unprivileged ping socket where net.ipv4.ping_group_range allows, and a
// raw socket (root or CAP_NET_RAW) otherwise.
type ICMPProbe struct {
	Host string
	seq  atomic.Uint32
}

var _ Probe = (*ICMPProbe)(nil)

// Name implements Probe.
func (p *ICMPProbe) Name() string { return "icmp-echo" }

// Probe implements Probe.
func (p *ICMPProbe) Probe(ctx context.Context) (time.Duration, error) {
	ip := net.ParseIP(p.Host).To4()
	if ip == nil {
		return 0, fmt.Errorf("icmp echo: host %q: not an IPv4 address", p.Host)
	}
	conn, dst, err := listenICMP(ip)
	if err != nil {
		return 0, fmt.Errorf("icmp echo %s: %w", p.Host, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	id := os.Getpid() & 0xffff
	seq := int(p.seq.Add(1) & 0xffff)
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("iotgw-resume")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := conn.WriteTo(b, dst); err != nil {
		return 0, fmt.Errorf("icmp echo %s: %w", p.Host, err)
	}
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return 0, fmt.Errorf("icmp echo %s: %w", p.Host, err)
		}
		if !sameHost(from, ip) {
			continue
		}
		rm, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || rm.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		// Ping sockets rewrite the ID to the socket's port; match on seq.
		if e, ok := rm.Body.(*icmp.Echo); ok && e.Seq == seq {
			return time.Since(start), nil
		}
	}
}

func sameHost(a net.Addr, ip net.IP) bool {
	switch v := a.(type) {
	case *net.UDPAddr:
		return v.IP.Equal(ip)
	case *net.IPAddr:
		return v.IP.Equal(ip)
	}
	return false
}

func listenICMP(ip net.IP) (*icmp.PacketConn, net.Addr, error) {
	if c, err := icmp.ListenPacket("udp4", "0.0.0.0"); err == nil {
		return c, &net.UDPAddr{IP: ip}, nil
	}
	c, err := icmp.ListenPacket("ip4:icmp", "0.0.0.0")
	if err != nil {
		return nil, nil, fmt.Errorf("no ping socket (net.ipv4.ping_group_range) and no raw socket: %w", err)
	}
	return c, &net.IPAddr{IP: ip}, nil
}

// ProbeStats is the running record of one probe.
type ProbeStats struct {
	Name    string        `json:"name"`
	Up      bool          `json:"up"`
	LastErr string        `json:"last_error,omitempty"`
	LastRTT time.Duration `json:"last_rtt_ns"`
	MeanRTT time.Duration `json:"mean_rtt_ns"` // exponentially weighted, alpha 1/8 (as TCP's SRTT)
	Jitter  time.Duration `json:"jitter_ns"`   // mean deviation, gain 1/16 (RFC 3550)
	OK      uint64        `json:"ok"`
	Fail    uint64        `json:"fail"`
}

// MonitorConfig configures a Monitor.
type MonitorConfig struct {
	// Probes run every Interval, concurrently. Required.
	Probes []Probe
	// Quorum is how many probes must succeed for the link to count as up.
	// Default 2 (of 3); capped at len(Probes).
	Quorum int
	// Interval between probe rounds. Default 200ms.
	Interval time.Duration
	// Timeout of one probe. Default Interval.
	Timeout time.Duration
	// Machine receives LinkUp, LinkPartial or LinkDown after every round.
	Machine *Machine
}

// Monitor runs the probes on a schedule and feeds the quorum verdict to the
// state machine, recording RTT and jitter per probe.
type Monitor struct {
	cfg   MonitorConfig
	mu    sync.Mutex
	stats []ProbeStats
	srtt  []float64
}

// NewMonitor validates cfg. Nothing runs until Run.
func NewMonitor(cfg MonitorConfig) (*Monitor, error) {
	if len(cfg.Probes) == 0 {
		return nil, errors.New("resume: monitor: no probes")
	}
	if cfg.Quorum <= 0 {
		cfg.Quorum = 2
	}
	cfg.Quorum = min(cfg.Quorum, len(cfg.Probes))
	if cfg.Interval <= 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = cfg.Interval
	}
	m := &Monitor{cfg: cfg, stats: make([]ProbeStats, len(cfg.Probes)), srtt: make([]float64, len(cfg.Probes))}
	for i, p := range cfg.Probes {
		m.stats[i].Name = p.Name()
	}
	return m, nil
}

// Run probes until ctx ends.
func (m *Monitor) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.Interval)
	defer t.Stop()
	for {
		m.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round runs every probe once, concurrently, and returns the verdict it
// fed to the machine.
func (m *Monitor) Round(ctx context.Context) Event {
	type result struct {
		rtt time.Duration
		err error
	}
	res := make([]result, len(m.cfg.Probes))
	var wg sync.WaitGroup
	for i, p := range m.cfg.Probes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
			defer cancel()
			rtt, err := p.Probe(pctx)
			res[i] = result{rtt, err}
		}()
	}
	wg.Wait()
	ok := 0
	m.mu.Lock()
	for i, r := range res {
		st := &m.stats[i]
		if r.err != nil {
			st.Up, st.LastErr = false, r.err.Error()
			st.Fail++
			continue
		}
		ok++
		st.Up, st.LastErr, st.LastRTT = true, "", r.rtt
		st.OK++
		x := float64(r.rtt)
		if m.srtt[i] == 0 {
			m.srtt[i] = x
		}
		st.Jitter += time.Duration((math.Abs(x-m.srtt[i]) - float64(st.Jitter)) / 16)
		m.srtt[i] += (x - m.srtt[i]) / 8
		st.MeanRTT = time.Duration(m.srtt[i])
	}
	m.mu.Unlock()
	ev := LinkDown
	switch {
	case ok == len(res):
		ev = LinkUp
	case ok >= m.cfg.Quorum:
		ev = LinkPartial
	}
	if ctx.Err() == nil && m.cfg.Machine != nil {
		m.cfg.Machine.Fire(ev)
	}
	return ev
}

// Stats returns each probe's record.
func (m *Monitor) Stats() []ProbeStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]ProbeStats(nil), m.stats...)
}
