package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

var (
	errEOF        = io.EOF
	discardLogger = slog.New(slog.DiscardHandler)
)

func reflectValue(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

// optionComponents is the part of the desired set given as options.
func (g *Gateway) optionComponents() components {
	s := g.s
	return components{
		connectors: s.connectors, codecs: s.codecs, sinks: s.sinks,
		routes: s.routes, router: s.router, codecFor: s.connectorCodecs, defaultCodec: s.defaultCodec,
	}
}

// keepRunning reports whether a configured component is unchanged. Called
// with g.mu held.
func (g *Gateway) keepRunning(kind, name, hash string) bool {
	switch kind {
	case "connector":
		cr := g.connectors[name]
		return cr != nil && cr.nc.hash == hash
	case "sink":
		sr := g.sinks[name]
		return sr != nil && sr.current().hash == hash
	case "codec":
		nc, ok := g.codecs[name]
		return ok && nc.hash == hash
	}
	return false
}

// apply validates the desired set and, only when all of it is valid, makes
// it current: unchanged connectors keep running (and their device
// sessions), changed ones restart, sinks swap implementations under their
// queues, and the routing table is swapped atomically. Called with g.mu
// held.
func (g *Gateway) apply(c components, running bool) error {
	// 1. validate everything before touching anything.
	codecs, def, router, err := g.validate(c)
	if err != nil {
		return err
	}
	applyValidated(g, c, running, codecs, def, router)
	return nil
}

// validate checks a desired set without changing anything and returns
// the codec table, the default codec and the router apply installs.
// Called with g.mu held.
func (g *Gateway) validate(c components) (map[string]namedCodec, string, Router, error) {
	var errs []error
	codecs := map[string]namedCodec{"raw": {name: "raw", codec: RawCodec{}}}
	for _, nc := range c.codecs {
		if _, dup := codecs[nc.name]; dup {
			errs = append(errs, fmt.Errorf("codec %q defined twice", nc.name))
			continue
		}
		if nc.codec == nil { // unchanged configured codec
			nc = g.codecs[nc.name]
		}
		codecs[nc.name] = nc
	}
	def := c.defaultCodec
	if def == "" {
		def = "raw"
		if len(c.codecs) == 1 {
			def = c.codecs[0].name
		}
	}
	if _, ok := codecs[def]; !ok {
		errs = append(errs, fmt.Errorf("default codec %q is not defined", def))
	}
	connNames := map[string]bool{}
	for _, nc := range c.connectors {
		if connNames[nc.name] {
			errs = append(errs, fmt.Errorf("connector %q defined twice", nc.name))
		}
		connNames[nc.name] = true
	}
	for conn, cd := range c.codecFor {
		if _, ok := codecs[cd]; !ok {
			errs = append(errs, fmt.Errorf("connector %q: unknown codec %q", conn, cd))
		}
	}
	var sinkNames []string
	seenSink := map[string]bool{}
	for _, ns := range c.sinks {
		if seenSink[ns.name] {
			errs = append(errs, fmt.Errorf("sink %q defined twice", ns.name))
		}
		seenSink[ns.name] = true
		sinkNames = append(sinkNames, ns.name)
	}
	if n := g.s.deadLetter.Sink; n != "" && g.sinks[n] != nil && !seenSink[n] {
		errs = append(errs, fmt.Errorf("sink %q is the dead-letter sink (gateway.dead_letter.sink) and cannot be removed while the gateway runs", n))
	}
	router := c.router
	if router == nil {
		tr, err := NewTopicRouter(c.routes, sinkNames)
		if err != nil {
			errs = append(errs, err)
		}
		router = tr
	} else if len(c.routes) > 0 {
		errs = append(errs, errors.New("routes and a custom router are mutually exclusive"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, "", nil, err
	}
	return codecs, def, router, nil
}

// applyValidated makes a validated set current (see apply). Called with
// g.mu held.
func applyValidated(g *Gateway, c components, running bool, codecs map[string]namedCodec, def string, router Router) {
	// 2. codecs: bindings read them atomically, so swap in place.
	g.codecs = codecs
	codecOf := func(conn string) namedCodec {
		if cd, ok := c.codecFor[conn]; ok {
			return codecs[cd]
		}
		return codecs[def]
	}
	if g.defaultBind == nil {
		g.defaultBind = &binding{g: g}
	}
	dc := codecs[def]
	g.defaultBind.codec.Store(&dc)

	// 3. sinks: same name keeps its queue; a changed one swaps its
	// implementation so a stuck retry uses the new one at once.
	newSinks := make(map[string]*sinkRun, len(c.sinks))
	var started []*sinkRun
	for _, ns := range c.sinks {
		sr := g.sinks[ns.name]
		switch {
		case sr != nil && (ns.sink == nil || ns.hash == ""):
			// unchanged: a configured sink with the same fingerprint, or
			// one given as an option (those never change).
		case sr != nil:
			old := sr.current()
			sr.swap(ns)
			closeIfCloser(g.log, "sink "+ns.name, old.sink) // configured, so ours to close
			g.log.Info("sink reconfigured", "sink", ns.name)
		default:
			sr = g.newSinkRun(ns)
			started = append(started, sr)
		}
		newSinks[ns.name] = sr
	}
	var removed []*sinkRun
	for name, sr := range g.sinks {
		if newSinks[name] == nil {
			sr.retire() // blocked pushes give up instead of holding the swap
			removed = append(removed, sr)
		}
	}
	if running {
		for _, sr := range started {
			g.startSink(sr)
		}
	}

	// 4. the routing table, atomically with respect to route batches.
	g.topoMu.Lock()
	g.topo.Store(&topology{router: router, sinks: newSinks})
	g.topoMu.Unlock()
	g.registerComponent("router", g, router) // its own instruments (rule hits)
	g.sinks = newSinks
	for _, sr := range removed {
		g.retired = append(g.retired, sr) // its counters stay in the totals
		close(sr.q)                       // no route worker can reach it any more; it drains, ends and closes what it built or started
		g.log.Info("sink removed", "sink", sr.name)
	}

	// 5. connectors: unchanged ones keep running, changed ones that can
	// take the change in place do (Reconfigurer), other changed ones
	// restart.
	want := map[string]namedConnector{}
	for _, nc := range c.connectors {
		want[nc.name] = nc
	}
	for name, cr := range g.connectors {
		nc, ok := want[name]
		if ok && (nc.conn == nil || nc.hash == "" || g.reconfigureInPlace(cr, nc)) {
			cd := codecOf(name)
			if prev := cr.bind.codec.Load(); prev.name != cd.name || prev.hash != cd.hash {
				cr.bind.codec.Store(&cd)
			}
			continue
		}
		cr.stop()
		if running {
			<-cr.done
		}
		delete(g.connectors, name)
		if ok {
			g.log.Info("connector reconfigured; restarting", "connector", name)
		} else {
			g.log.Info("connector removed", "connector", name)
		}
	}
	for _, nc := range c.connectors {
		if _, ok := g.connectors[nc.name]; ok {
			continue
		}
		cr := g.newConnRun(nc, codecOf(nc.name))
		g.connectors[nc.name] = cr
		if running {
			g.startConnector(cr)
		}
	}
	g.routes = c.routes
}

// Reload re-reads the configuration file given to WithConfigFile and
// applies it. An invalid file changes nothing: the gateway keeps running
// its last good configuration and Reload returns why. A file that would
// leave the gateway without any connector or without any sink while it
// runs some, an empty file among them, counts as invalid unless allowed
// (WithAllowEmptyReload, gateway.allow_empty_reload).
func (g *Gateway) Reload(ctx context.Context) error {
	if g.s.configPath == "" {
		return errors.New("gateway: reload: no configuration file (WithConfigFile)")
	}
	c, err := LoadConfig(g.s.configPath)
	if err != nil {
		g.reloadFailed(err)
		return fmt.Errorf("gateway: reload rejected, keeping last good config: %w", err)
	}
	return g.ApplyConfig(ctx, c)
}

// ApplyConfig makes c the running configuration (see Reload, including
// the guard against removing every connector or sink). Sections that
// shape the gateway itself (gateway:, health:, store:) take effect at the
// next start; a change to them is logged.
func (g *Gateway) ApplyConfig(ctx context.Context, c *Config) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.stopCh:
		return ErrClosed
	default:
	}
	if err := g.guardEmpty(c); err != nil {
		g.reloadFailedLocked(err)
		return fmt.Errorf("gateway: reload rejected, keeping last good config: %w", err)
	}
	cc, err := c.components(g.s.registry, g.keepRunning, g.log)
	if err == nil {
		err = g.apply(g.optionComponents().merge(cc), g.running)
	}
	if err != nil {
		g.reloadFailedLocked(err)
		return fmt.Errorf("gateway: reload rejected, keeping last good config: %w", err)
	}
	if g.config != nil {
		if diff := c.staticDiff(g.config); len(diff) > 0 {
			g.log.Warn("configuration sections changed that apply only at restart", "sections", diff)
		}
	}
	if c.MQTT.QoS != nil {
		g.qos.Store(uint32(*c.MQTT.QoS))
	}
	g.config = c
	g.reloadErr = nil
	g.lastReload = time.Now()
	g.stats.reloads.Add(1)
	g.log.Info("configuration applied", "connectors", len(g.connectors), "sinks", len(g.sinks), "routes", len(g.routes))
	return nil
}

// guardEmpty rejects a configuration that would remove every running
// connector or every running sink, unless allowed. Called with g.mu held.
func (g *Gateway) guardEmpty(c *Config) error {
	if g.s.allowEmpty || c.Gateway.AllowEmptyReload || g.config != nil && g.config.Gateway.AllowEmptyReload {
		return nil
	}
	var why []string
	if n := len(g.connectors); n > 0 && len(c.Connectors)+len(g.s.connectors) == 0 {
		why = append(why, fmt.Sprintf("every connector (%d running)", n))
	}
	if n := len(g.sinks); n > 0 && len(c.Sinks)+len(g.s.sinks) == 0 {
		why = append(why, fmt.Sprintf("every sink (%d running)", n))
	}
	if len(why) == 0 {
		return nil
	}
	what := "configuration"
	if c.empty {
		what = "empty configuration"
		if c.file != "" {
			what = "empty file " + c.file
		}
	}
	return fmt.Errorf("%s would remove %s; set gateway.allow_empty_reload: true to allow it", what, strings.Join(why, " and "))
}

func (g *Gateway) reloadFailed(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reloadFailedLocked(err)
}

func (g *Gateway) reloadFailedLocked(err error) {
	g.reloadErr = err
	g.stats.reloadErrors.Add(1)
	g.log.Error("configuration rejected; keeping last good config", "err", err)
}

// watchConfig reloads the file when it changes. Editors replace files in
// several ways (write in place, rename over, remove and create), so watch
// the directory, and read the file only once it has been still for the
// debounce (WithConfigDebounce): no event, same size and modification
// time.
func (g *Gateway) watchConfig(ctx context.Context, cw *configWatch) {
	defer g.ctrlWG.Done()
	w, path := cw.w, cw.path
	defer w.Close()
	timer := time.NewTimer(g.s.debounce)
	timer.Stop()
	defer timer.Stop()
	var last fileState
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if filepath.Clean(ev.Name) == path && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
				last = statFile(path)
				timer.Reset(g.s.debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			g.log.Warn("config watch", "err", err)
		case <-timer.C:
			now := statFile(path)
			if now != last {
				last = now // still changing
				timer.Reset(g.s.debounce)
				continue
			}
			if !now.exists {
				continue // removed; a create follows when it is replaced
			}
			if err := g.Reload(ctx); err == nil {
				g.log.Info("configuration reloaded from file", "file", g.s.configPath)
			}
		}
	}
}

// configWatch is a started directory watch of the configuration file.
type configWatch struct {
	w    *fsnotify.Watcher
	path string
}

// openConfigWatch starts watching; nil when the watch is unavailable
// (logged): the gateway then reloads only on Reload.
func (g *Gateway) openConfigWatch() *configWatch {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		g.log.Error("config watch unavailable", "err", err)
		return nil
	}
	path, _ := filepath.Abs(g.s.configPath)
	if err := w.Add(filepath.Dir(path)); err != nil {
		_ = w.Close()
		g.log.Error("config watch unavailable", "err", err)
		return nil
	}
	return &configWatch{w: w, path: path}
}

// fileState is what tells a file still being written from a stable one.
type fileState struct {
	exists bool
	size   int64
	mtime  time.Time
}

func statFile(path string) fileState {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{}
	}
	return fileState{exists: true, size: fi.Size(), mtime: fi.ModTime()}
}
