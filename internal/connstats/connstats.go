// Package connstats holds the counters every southbound connector keeps,
// for the connector as a whole and per device: frames, bytes, errors,
// malformed input, denied requests, reconnects and request latency. Counters are atomics,
// so the hot path never takes a lock; the per-device table takes a read
// lock to find an existing device.
package connstats

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Counters is one set of counters. The zero value is ready.
type Counters struct {
	frames, bytes, errors, malformed, denied, reconnects atomic.Uint64
	oversized, exceptions                                atomic.Uint64
	latencyN, latencySum, latencyMax                     atomic.Uint64
}

// Frame counts one frame of n bytes accepted by the pipeline.
func (c *Counters) Frame(n int) { c.frames.Add(1); c.bytes.Add(uint64(n)) }

// Error counts one failed operation (I/O, timeout, refused frame).
func (c *Counters) Error() { c.errors.Add(1) }

// Malformed counts one piece of device input that could not be parsed.
func (c *Counters) Malformed() { c.malformed.Add(1) }

// Denied counts one request refused by policy (an ACL, a rate limit, a
// failed authentication). Callers count it as an Error too.
func (c *Counters) Denied() { c.denied.Add(1) }

// Oversized counts one packet or message refused for exceeding the
// connector's size limit.
func (c *Counters) Oversized() { c.oversized.Add(1) }

// Exception counts one request the device answered with a protocol-level
// refusal (a Modbus exception response). Callers count it as an Error too.
func (c *Counters) Exception() { c.exceptions.Add(1) }

// Reconnect counts one re-established session or connection.
func (c *Counters) Reconnect() { c.reconnects.Add(1) }

// Latency records the duration of one request or delivery.
func (c *Counters) Latency(d time.Duration) {
	if d < 0 {
		d = 0
	}
	n := uint64(d)
	c.latencyN.Add(1)
	c.latencySum.Add(n)
	for {
		m := c.latencyMax.Load()
		if n <= m || c.latencyMax.CompareAndSwap(m, n) {
			return
		}
	}
}

// Snapshot is a point-in-time copy of Counters.
type Snapshot struct {
	Frames     uint64 `json:"frames"`
	Bytes      uint64 `json:"bytes"`
	Errors     uint64 `json:"errors"`
	Malformed  uint64 `json:"malformed"`
	Denied     uint64 `json:"denied"`
	Reconnects uint64 `json:"reconnects"`
	// Oversized counts packets refused for exceeding the size limit.
	Oversized uint64 `json:"oversized"`
	// Exceptions counts requests the device refused (Modbus exception
	// responses); connectors without such answers leave it 0.
	Exceptions uint64 `json:"exceptions,omitempty"`
	// Requests is how many latency samples were taken.
	Requests uint64 `json:"requests"`
	// LatencyAvg and LatencyMax summarise the recorded latencies
	// (nanoseconds in JSON).
	LatencyAvg time.Duration `json:"latency_avg_ns"`
	LatencyMax time.Duration `json:"latency_max_ns"`
}

// Snapshot returns the current values.
func (c *Counters) Snapshot() Snapshot {
	s := Snapshot{
		Frames: c.frames.Load(), Bytes: c.bytes.Load(), Errors: c.errors.Load(),
		Malformed: c.malformed.Load(), Denied: c.denied.Load(), Reconnects: c.reconnects.Load(), Oversized: c.oversized.Load(), Exceptions: c.exceptions.Load(),
		Requests: c.latencyN.Load(), LatencyMax: time.Duration(c.latencyMax.Load()),
	}
	if s.Requests > 0 {
		s.LatencyAvg = time.Duration(c.latencySum.Load() / s.Requests)
	}
	return s
}

// Table is the connector total plus one Counters per device.
type Table struct {
	Total Counters

	mu      sync.RWMutex
	devices map[string]*Counters
}

// Device returns the counters of device, creating them on first use.
func (t *Table) Device(device string) *Counters {
	c, _ := t.DeviceFirst(device)
	return c
}

// DeviceFirst is Device that also reports whether this call created the
// device's counters.
func (t *Table) DeviceFirst(device string) (*Counters, bool) {
	t.mu.RLock()
	c := t.devices[device]
	t.mu.RUnlock()
	if c != nil {
		return c, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if c = t.devices[device]; c != nil {
		return c, false
	}
	if t.devices == nil {
		t.devices = map[string]*Counters{}
	}
	c = &Counters{}
	t.devices[device] = c
	return c, true
}

// Stats is what a connector's Stats method returns.
type Stats struct {
	Total   Snapshot
	Devices map[string]Snapshot
}

// Stats snapshots the table.
func (t *Table) Stats() Stats {
	t.mu.RLock()
	defer t.mu.RUnlock()
	s := Stats{Total: t.Total.Snapshot(), Devices: make(map[string]Snapshot, len(t.devices))}
	for k, c := range t.devices {
		s.Devices[k] = c.Snapshot()
	}
	return s
}

// Report is a bounded, JSON-ready view of a Table for status endpoints:
// the totals and at most a given number of devices, those with the most
// trouble (errors, malformed input, denials, reconnects) first, then the
// busiest, ties by name. DevicesOmitted counts the devices left out.
type Report struct {
	Total          Snapshot            `json:"total"`
	Devices        map[string]Snapshot `json:"devices,omitempty"`
	DevicesOmitted int                 `json:"devices_omitted,omitempty"`
}

// Report returns the totals and at most maxDevices devices (none when
// maxDevices <= 0). It copies every device's counters once, so its cost
// grows with the number of devices, not with maxDevices.
func (t *Table) Report(maxDevices int) Report {
	st := t.Stats()
	r := Report{Total: st.Total}
	if maxDevices <= 0 {
		r.DevicesOmitted = len(st.Devices)
		return r
	}
	type dev struct {
		name string
		s    Snapshot
	}
	all := make([]dev, 0, len(st.Devices))
	for k, s := range st.Devices {
		all = append(all, dev{k, s})
	}
	trouble := func(s Snapshot) uint64 {
		return s.Errors + s.Malformed + s.Denied + s.Oversized + s.Exceptions + s.Reconnects
	}
	slices.SortFunc(all, func(a, b dev) int {
		if c := cmp.Compare(trouble(b.s), trouble(a.s)); c != 0 {
			return c
		}
		if c := cmp.Compare(b.s.Frames, a.s.Frames); c != 0 {
			return c
		}
		return cmp.Compare(a.name, b.name)
	})
	if len(all) > maxDevices {
		r.DevicesOmitted = len(all) - maxDevices
		all = all[:maxDevices]
	}
	r.Devices = make(map[string]Snapshot, len(all))
	for _, d := range all {
		r.Devices[d.name] = d.s
	}
	return r
}
