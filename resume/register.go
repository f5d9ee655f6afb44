package resume

import (
	"net"
	"net/url"
	"time"

	"github.com/iotgw/gateway"
)

// sqliteSection is the YAML form of SQLiteConfig:
//
//	store:
//	  sqlite:
//	    path: /var/lib/gw/queue.db   # required
//	    synchronous: FULL            # FULL (default) | NORMAL
//	    commit_max_records: 4096
//	    commit_delay: 0s
//	    max_rows: 10000000
//	    max_bytes: 1073741824
//	    overflow: reject_new         # reject_new (default) | drop_oldest
//	    min_free_bytes: 0            # 0: 2% of the file system, 1 MiB..16 MiB; -1 disables the check
//	    skip_integrity_check: false
//	    drain:                       # optional: the resume Drainer replays the backlog
//	      batch: 256
//	      in_flight: 4
//	      live_weight: 3             # live:backlog turns on a shared sink
//	      backlog_weight: 1
//	      backoff_min: 100ms
//	      backoff_max: 5s
//	      probes:                    # optional: state machine gated by a quorum of probes
//	        interval: 200ms
//	        quorum: 2
//	        icmp: 198.51.100.7
//	        http_head: https://cloud.example/health
//	        heartbeat: cloud.example:9999
type sqliteSection struct {
	Path               string        `yaml:"path"`
	Synchronous        string        `yaml:"synchronous"`
	CommitMaxRecords   int           `yaml:"commit_max_records"`
	CommitDelay        time.Duration `yaml:"commit_delay"`
	MaxRows            int64         `yaml:"max_rows"`
	MaxBytes           int64         `yaml:"max_bytes"`
	Overflow           string        `yaml:"overflow"`
	MinFreeBytes       int64         `yaml:"min_free_bytes"`
	SkipIntegrityCheck bool          `yaml:"skip_integrity_check"`
	Drain              *drainSection `yaml:"drain"`
}

type drainSection struct {
	Batch         int           `yaml:"batch"`
	InFlight      int           `yaml:"in_flight"`
	LiveWeight    int           `yaml:"live_weight"`
	BacklogWeight int           `yaml:"backlog_weight"`
	BackoffMin    time.Duration `yaml:"backoff_min"`
	BackoffMax    time.Duration `yaml:"backoff_max"`
	Probes        *probeSection `yaml:"probes"`
}

type probeSection struct {
	Interval  time.Duration `yaml:"interval"`
	Timeout   time.Duration `yaml:"timeout"`
	Quorum    int           `yaml:"quorum"`
	ICMP      string        `yaml:"icmp"`
	HTTPHead  string        `yaml:"http_head"`
	Heartbeat string        `yaml:"heartbeat"`
}

// Register adds the store kind "sqlite" to reg, so a configuration can say
// `store: {sqlite: {path: ...}}`. Building the store opens nothing; the
// database opens on first use.
func Register(reg *gateway.Registry) error {
	return reg.AddStore("sqlite", buildSQLite)
}

// buildSQLite is the factory of the "sqlite" store kind: a SQLiteStore, or
// an EdgeStore when the section has a drain block.
func buildSQLite(spec gateway.Section) (gateway.Store, error) {
	var sec sqliteSection
	if err := spec.Decode(&sec); err != nil {
		return nil, err
	}
	if sec.Path == "" {
		return nil, spec.Errorf("path", "required: the database file")
	}
	cfg := SQLiteConfig{
		Path: sec.Path, Synchronous: Synchronous(sec.Synchronous),
		CommitMaxRecords: sec.CommitMaxRecords, CommitDelay: sec.CommitDelay,
		MaxRows: sec.MaxRows, MaxBytes: sec.MaxBytes, MinFreeBytes: sec.MinFreeBytes,
		SkipIntegrityCheck: sec.SkipIntegrityCheck, Logger: spec.Logger(),
	}
	switch sec.Overflow {
	case "", "reject_new":
	case "drop_oldest":
		cfg.Overflow = OverflowDropOldest
	default:
		return nil, spec.Errorf("overflow", "%q: want reject_new or drop_oldest", sec.Overflow)
	}
	switch sec.Synchronous {
	case "", "FULL", "NORMAL", "full", "normal":
	default:
		return nil, spec.Errorf("synchronous", "%q: want FULL or NORMAL", sec.Synchronous)
	}
	if sec.CommitMaxRecords < 0 {
		return nil, spec.Errorf("commit_max_records", "must not be negative")
	}
	if sec.Drain == nil {
		st, err := NewSQLiteStore(cfg)
		if err != nil {
			return nil, spec.Errorf("path", "%v", err)
		}
		return st, nil
	}
	ec, err := edgeConfig(spec, sec.Drain)
	if err != nil {
		return nil, err
	}
	ec.Store = cfg
	ec.Drain.Logger = spec.Logger()
	st, err := NewEdgeStore(ec)
	if err != nil {
		return nil, spec.Errorf("path", "%v", err)
	}
	return st, nil
}

// edgeConfig checks the drain section; errors name the field.
func edgeConfig(spec gateway.Section, d *drainSection) (EdgeConfig, error) {
	var ec EdgeConfig
	for _, f := range []struct {
		name string
		v    int
	}{{"drain.batch", d.Batch}, {"drain.in_flight", d.InFlight}, {"drain.live_weight", d.LiveWeight}, {"drain.backlog_weight", d.BacklogWeight}} {
		if f.v < 0 {
			return ec, spec.Errorf(f.name, "must not be negative")
		}
	}
	if d.BackoffMin < 0 || d.BackoffMax < 0 {
		return ec, spec.Errorf("drain.backoff_min", "backoff must not be negative")
	}
	if d.BackoffMax > 0 && d.BackoffMin > d.BackoffMax {
		return ec, spec.Errorf("drain.backoff_min", "%v is above backoff_max %v", d.BackoffMin, d.BackoffMax)
	}
	ec.Drain = DrainerConfig{Batch: d.Batch, InFlight: d.InFlight, LiveWeight: d.LiveWeight, BacklogWeight: d.BacklogWeight,
		Backoff: Backoff{Min: d.BackoffMin, Max: d.BackoffMax}}
	p := d.Probes
	if p == nil {
		return ec, nil
	}
	if p.Interval < 0 || p.Timeout < 0 {
		return ec, spec.Errorf("drain.probes.interval", "must not be negative")
	}
	if p.ICMP != "" {
		if ip := net.ParseIP(p.ICMP); ip == nil || ip.To4() == nil {
			return ec, spec.Errorf("drain.probes.icmp", "%q: want an IPv4 address", p.ICMP)
		}
		ec.Monitor.Probes = append(ec.Monitor.Probes, &ICMPProbe{Host: p.ICMP})
	}
	if p.HTTPHead != "" {
		u, err := url.Parse(p.HTTPHead)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return ec, spec.Errorf("drain.probes.http_head", "%q: want an http or https URL", p.HTTPHead)
		}
		ec.Monitor.Probes = append(ec.Monitor.Probes, &HTTPHeadProbe{URL: p.HTTPHead})
	}
	if p.Heartbeat != "" {
		if _, port, err := net.SplitHostPort(p.Heartbeat); err != nil || port == "" {
			return ec, spec.Errorf("drain.probes.heartbeat", "%q: want host:port", p.Heartbeat)
		}
		ec.Monitor.Probes = append(ec.Monitor.Probes, &HeartbeatProbe{Addr: p.Heartbeat})
	}
	if len(ec.Monitor.Probes) == 0 {
		return ec, spec.Errorf("drain.probes", "no probe configured: give icmp, http_head and/or heartbeat")
	}
	if p.Quorum < 0 || p.Quorum > len(ec.Monitor.Probes) {
		return ec, spec.Errorf("drain.probes.quorum", "%d: want 1..%d (the probes configured)", p.Quorum, len(ec.Monitor.Probes))
	}
	ec.Monitor.Quorum, ec.Monitor.Interval, ec.Monitor.Timeout = p.Quorum, p.Interval, p.Timeout
	return ec, nil
}
