package resume

import (
	"context"
	"sync"
	"time"

	"github.com/iotgw/gateway"
)

// EdgeStore is a SQLiteStore that also drives the gateway's replay: it
// implements gateway.Drainer and gateway.LiveWrapper, so handing it to a
// gateway in edge mode (gateway.WithStore, or the "sqlite" store kind with
// a drain section) puts the Drainer, and with probes the Monitor and the
// state machine, in charge of the backlog and of the live path.
//
//	st, _ := resume.NewEdgeStore(resume.EdgeConfig{Store: resume.SQLiteConfig{Path: "q.db"},
//		Monitor: resume.MonitorConfig{Probes: []resume.Probe{&resume.ICMPProbe{Host: "203.0.113.1"}, ...}}})
//	gw, _ := gateway.New(gateway.WithMode(gateway.ModeEdge), gateway.WithStore(st), ...)
type EdgeStore struct {
	*SQLiteStore
	drainer *Drainer
	monitor *Monitor // nil without probes
	machine *Machine // nil without probes
}

// EdgeConfig configures an EdgeStore.
type EdgeConfig struct {
	Store SQLiteConfig
	// Drain configures the Drainer; its Store, Sink and Machine are set by
	// NewEdgeStore.
	Drain DrainerConfig
	// Monitor, when it has Probes, runs them and feeds a state machine
	// that gates the drain and the live path; its Machine is set by
	// NewEdgeStore. Without probes there is no machine: failed batches are
	// retried on the Drainer's backoff alone.
	Monitor MonitorConfig
}

// NewEdgeStore opens nothing: the database opens on first use, the
// drainer and probes run while the gateway does.
func NewEdgeStore(cfg EdgeConfig) (*EdgeStore, error) {
	st, err := NewSQLiteStore(cfg.Store)
	if err != nil {
		return nil, err
	}
	e := &EdgeStore{SQLiteStore: st}
	dc := cfg.Drain
	dc.Store, dc.Sink = st, nil
	if dc.Logger == nil {
		dc.Logger = cfg.Store.Logger
	}
	if len(cfg.Monitor.Probes) > 0 {
		e.machine = NewMachine(MachineConfig{Logger: dc.Logger, Backlog: func() bool { return st.Stats().Rows > 0 }})
		mc := cfg.Monitor
		mc.Machine = e.machine
		if e.monitor, err = NewMonitor(mc); err != nil {
			return nil, err
		}
		dc.Machine = e.machine
	}
	if e.drainer, err = NewDrainer(dc); err != nil {
		return nil, err
	}
	return e, nil
}

var (
	_ gateway.Store       = (*EdgeStore)(nil)
	_ gateway.Drainer     = (*EdgeStore)(nil)
	_ gateway.LiveWrapper = (*EdgeStore)(nil)
)

// Drain implements gateway.Drainer: the probes and the drainer run until
// ctx ends.
func (e *EdgeStore) Drain(ctx context.Context, t gateway.DrainTarget) error {
	if e.monitor == nil {
		return e.drainer.Drain(ctx, t)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.monitor.Run(ctx)
	}()
	err := e.drainer.Drain(ctx, t)
	wg.Wait()
	return err
}

// WrapLive implements gateway.LiveWrapper.
func (e *EdgeStore) WrapLive(name string, s gateway.Sink) gateway.Sink {
	return e.drainer.WrapLive(name, s)
}

// Drainer returns the drainer, for its Stats.
func (e *EdgeStore) Drainer() *Drainer { return e.drainer }

// Machine returns the state machine, nil without probes.
func (e *EdgeStore) Machine() *Machine { return e.machine }

// Monitor returns the probe monitor, nil without probes.
func (e *EdgeStore) Monitor() *Monitor { return e.monitor }

// EdgeStatus is the report of a Drainer or EdgeStore in the gateway's
// Stats.Drain and on /statz.
type EdgeStatus struct {
	// State and Since are the state machine's (empty without one).
	State       string            `json:"state,omitempty"`
	Since       time.Time         `json:"since,omitzero"`
	Transitions map[string]uint64 `json:"transitions,omitempty"`
	Drain       DrainStats        `json:"drain"`
	Probes      []ProbeStats      `json:"probes,omitempty"`
}

var (
	_ gateway.DrainReporter = (*Drainer)(nil)
	_ gateway.DrainReporter = (*EdgeStore)(nil)
)

// DrainStatus implements gateway.DrainReporter.
func (d *Drainer) DrainStatus() any { return d.status() }

func (d *Drainer) status() EdgeStatus {
	st := EdgeStatus{Drain: d.Stats()}
	if m := d.cfg.Machine; m != nil {
		s, since := m.State()
		st.State, st.Since, st.Transitions = s.String(), since, m.Transitions()
	}
	return st
}

// DrainStatus implements gateway.DrainReporter: the drainer's report with
// the probes' records.
func (e *EdgeStore) DrainStatus() any {
	st := e.drainer.status()
	if e.monitor != nil {
		st.Probes = e.monitor.Stats()
	}
	return st
}
