package rules

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/iotgw/gateway"
)

// Loader builds a fresh router from its source (rule files, policies).
type Loader func() (gateway.Router, error)

// Engine is a gateway.Router whose rules can be replaced while messages
// flow. Route reads the current rule set once per message, so every
// message is evaluated entirely against one set: the old or the new,
// never a mix. A replacement that fails to load changes nothing.
type Engine struct {
	cur  atomic.Pointer[generation]
	load Loader
	mu   sync.Mutex // serialises Reload and Replace
}

type generation struct {
	r   gateway.Router
	gen uint64
}

var _ gateway.Router = (*Engine)(nil)

// NewEngine loads the first rule set with load and keeps load for Reload.
func NewEngine(load Loader) (*Engine, error) {
	if load == nil {
		return nil, errors.New("rules: nil loader")
	}
	r, err := load()
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("rules: loader returned no router")
	}
	e := &Engine{load: load}
	e.cur.Store(&generation{r: r, gen: 1})
	return e, nil
}

// Route implements gateway.Router.
func (e *Engine) Route(m *gateway.Message, dst []string) []string {
	return e.cur.Load().r.Route(m, dst)
}

// Reload runs the loader again. On success the new rules take over for
// every message routed from now on; on error the running rules stay and
// the error says why.
func (e *Engine) Reload() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, err := e.load()
	if err != nil {
		return fmt.Errorf("rules: reload rejected, keeping the running rules: %w", err)
	}
	if r == nil {
		return errors.New("rules: reload rejected: loader returned no router")
	}
	e.cur.Store(&generation{r: r, gen: e.cur.Load().gen + 1})
	return nil
}

// Replace makes r the running rule set (for rules built in code or
// received through an API).
func (e *Engine) Replace(r gateway.Router) error {
	if r == nil {
		return errors.New("rules: replace with nil router")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cur.Store(&generation{r: r, gen: e.cur.Load().gen + 1})
	return nil
}

// Current returns the running rule set (a *Set for rule files).
func (e *Engine) Current() gateway.Router { return e.cur.Load().r }

// Generation counts successful loads, starting at 1.
func (e *Engine) Generation() uint64 { return e.cur.Load().gen }

// Register installs the rule engine as reg's rules factory: with
// rules.enabled true in the configuration, the gateway loads every *.yaml
// file in rules.dir (default "rules") and routes with it. A configuration
// reload reloads the rule files; a bad file rejects the reload and the
// running rules stay. Rules may name the sinks of the configuration and
// those listed in o.Sinks (sinks the host adds with gateway.WithSink).
func Register(reg *gateway.Registry, o Options) {
	reg.SetRules(func(c gateway.RulesConfig, sinks []string) (gateway.Router, error) {
		dir := c.Dir
		if dir == "" {
			dir = "rules"
		}
		opts := o
		opts.Sinks = append(append([]string{}, o.Sinks...), sinks...)
		return NewEngine(func() (gateway.Router, error) { return LoadDir(filepath.Clean(dir), opts) })
	})
}
