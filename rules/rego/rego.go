package rego

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	opa "github.com/open-policy-agent/opa/v1/rego"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/rules"
)

// Query is the document a policy defines for each message.
const Query = "data.gateway.decision"

// Options tune Load and Compile.
type Options struct {
	// Sinks, when non-nil, lists the sink names a decision may use; others
	// are run-time errors for that message.
	Sinks []string
	// Logger receives run-time policy errors, sparsely. Default: discard.
	Logger *slog.Logger
	// Timeout bounds one evaluation. Default 100ms.
	Timeout time.Duration
}

// Policy is a compiled set of Rego modules. It implements gateway.Router
// and is safe for concurrent use.
type Policy struct {
	pq      opa.PreparedEvalQuery
	sinks   map[string]bool
	log     *slog.Logger
	timeout time.Duration
	errs    atomic.Uint64
	drops   atomic.Uint64
	lastErr atomic.Pointer[string]
}

var _ gateway.Router = (*Policy)(nil)

// Load compiles every *.rego file of dir. A file that does not parse or
// compile fails the load with its file, line and reason.
func Load(dir string, o Options) (*Policy, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.rego"))
	if err != nil {
		return nil, fmt.Errorf("rego: %w", err)
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("rego: no *.rego policy files in %s", dir)
	}
	mods := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("rego: %w", err)
		}
		mods[f] = string(b)
	}
	return Compile(mods, o)
}

// Compile compiles modules (file name to Rego source, v1 syntax).
func Compile(modules map[string]string, o Options) (*Policy, error) {
	names := make([]string, 0, len(modules))
	for n := range modules {
		names = append(names, n)
	}
	sort.Strings(names)
	opts := []func(*opa.Rego){opa.Query(Query), opa.StrictBuiltinErrors(true)}
	hasDecision := false
	var errs []error
	for _, n := range names {
		mod, err := ast.ParseModuleWithOpts(n, modules[n], ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			errs = append(errs, locate(err))
			continue
		}
		if mod.Package.Path.String() == "data.gateway" {
			for _, r := range mod.Rules {
				if r.Head.Name.String() == "decision" || r.Head.Ref().String() == "decision" {
					hasDecision = true
				}
			}
		}
		opts = append(opts, opa.ParsedModule(mod))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if !hasDecision {
		return nil, fmt.Errorf("rego: no rule \"decision\" in package gateway among %v", names)
	}
	pq, err := opa.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		return nil, locate(err)
	}
	p := &Policy{pq: pq, log: o.Logger, timeout: o.Timeout}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.timeout <= 0 {
		p.timeout = 100 * time.Millisecond
	}
	if o.Sinks != nil {
		p.sinks = map[string]bool{}
		for _, s := range o.Sinks {
			p.sinks[s] = true
		}
	}
	return p, nil
}

// locate rewrites OPA errors as "file:line:col: reason" lines.
func locate(err error) error {
	var list ast.Errors
	if errors.As(err, &list) {
		var out []error
		for _, e := range list {
			out = append(out, astError(e))
		}
		return errors.Join(out...)
	}
	var one *ast.Error
	if errors.As(err, &one) {
		return astError(one)
	}
	return fmt.Errorf("rego: %w", err)
}

func astError(e *ast.Error) error {
	if e.Location != nil {
		return fmt.Errorf("rego: %s:%d:%d: %s: %s", e.Location.File, e.Location.Row, e.Location.Col, e.Code, e.Message)
	}
	return fmt.Errorf("rego: %s: %s", e.Code, e.Message)
}

// input builds the input document of m without a JSON round trip.
func input(m *gateway.Message) ast.Value {
	tags := ast.NewObject()
	for _, t := range m.Tags {
		tags.Insert(ast.StringTerm(t.Key), ast.StringTerm(t.Value))
	}
	points := ast.NewObject()
	for _, p := range m.Points {
		var v *ast.Term
		switch p.Value.Kind() {
		case gateway.KindBool:
			v = ast.BooleanTerm(p.Value.Bool())
		case gateway.KindInt:
			v = ast.IntNumberTerm(int(p.Value.Int()))
		case gateway.KindUint:
			v = ast.UIntNumberTerm(p.Value.Uint())
		case gateway.KindFloat:
			v = ast.FloatNumberTerm(p.Value.Float())
		case gateway.KindString, gateway.KindBytes:
			v = ast.StringTerm(p.Value.Str())
		default:
			v = ast.NullTerm()
		}
		points.Insert(ast.StringTerm(p.Name), v)
	}
	doc := ast.NewObject(
		ast.Item(ast.StringTerm("id"), ast.StringTerm(m.ID.String())),
		ast.Item(ast.StringTerm("device"), ast.StringTerm(m.Device)),
		ast.Item(ast.StringTerm("topic"), ast.StringTerm(m.Topic)),
		ast.Item(ast.StringTerm("connector"), ast.StringTerm(m.Connector)),
		ast.Item(ast.StringTerm("priority"), ast.IntNumberTerm(int(m.Priority))),
		ast.Item(ast.StringTerm("qos"), ast.IntNumberTerm(int(m.QoS))),
		ast.Item(ast.StringTerm("tags"), ast.NewTerm(tags)),
		ast.Item(ast.StringTerm("points"), ast.NewTerm(points)),
	)
	if !m.Time.IsZero() {
		doc.Insert(ast.StringTerm("time"), ast.StringTerm(m.Time.UTC().Format(time.RFC3339Nano)))
	}
	return doc
}

// Route implements gateway.Router: it evaluates the policy for m and
// applies its decision. A policy error (a conflict between rules, a
// builtin failing, a malformed decision) skips the message, counted.
func (p *Policy) Route(m *gateway.Message, dst []string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	rs, err := p.pq.Eval(ctx, opa.EvalParsedInput(input(m)))
	if err != nil {
		p.fail(m, err)
		return dst
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return dst // undefined: not routed
	}
	d, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		p.fail(m, fmt.Errorf("decision is %T, want an object", rs[0].Expressions[0].Value))
		return dst
	}
	out, err := p.apply(d, m, dst)
	if err != nil {
		p.fail(m, err)
		return dst
	}
	return out
}

func (p *Policy) apply(d map[string]any, m *gateway.Message, dst []string) ([]string, error) {
	for k := range d {
		switch k {
		case "sinks", "topic", "priority", "qos", "tags", "drop":
		default:
			return dst, fmt.Errorf("decision: unknown field %q", k)
		}
	}
	if v, ok := d["drop"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return dst, fmt.Errorf("decision.drop is %T, want a boolean", v)
		}
		if b {
			p.drops.Add(1)
			return dst, nil
		}
	}
	var sinks []string
	if v, ok := d["sinks"]; ok {
		list, isList := v.([]any)
		if !isList {
			return dst, fmt.Errorf("decision.sinks is %T, want a set or array of names", v)
		}
		for _, e := range list {
			s, isStr := e.(string)
			if !isStr {
				return dst, fmt.Errorf("decision.sinks holds %T, want strings", e)
			}
			if p.sinks != nil && !p.sinks[s] {
				return dst, fmt.Errorf("decision.sinks: unknown sink %q", s)
			}
			sinks = append(sinks, s)
		}
	}
	num := func(field string, max int64) (int64, bool, error) {
		v, ok := d[field]
		if !ok {
			return 0, false, nil
		}
		n, isNum := v.(json.Number)
		if !isNum {
			return 0, false, fmt.Errorf("decision.%s is %T, want a number", field, v)
		}
		i, err := n.Int64()
		if err != nil || i < 0 || i > max {
			return 0, false, fmt.Errorf("decision.%s %s: want an integer 0..%d", field, n, max)
		}
		return i, true, nil
	}
	prio, hasPrio, err := num("priority", 255)
	if err != nil {
		return dst, err
	}
	qos, hasQoS, err := num("qos", 2)
	if err != nil {
		return dst, err
	}
	var topic string
	if v, ok := d["topic"]; ok {
		s, isStr := v.(string)
		if !isStr || s == "" {
			return dst, fmt.Errorf("decision.topic is %T %v, want a non-empty string", v, v)
		}
		if err := gateway.ValidateTopicFilter(s); err != nil || containsWildcard(s) {
			return dst, fmt.Errorf("decision.topic %q: must not contain MQTT wildcards", s)
		}
		topic = s
	}
	var tags map[string]any
	if v, ok := d["tags"]; ok {
		t, isObj := v.(map[string]any)
		if !isObj {
			return dst, fmt.Errorf("decision.tags is %T, want an object", v)
		}
		for k, tv := range t {
			if _, isStr := tv.(string); !isStr {
				return dst, fmt.Errorf("decision.tags.%s is %T, want a string", k, tv)
			}
		}
		tags = t
	}
	// Everything checked: now change the message.
	if hasPrio {
		m.Priority = gateway.Priority(prio)
	}
	if hasQoS {
		m.QoS = byte(qos)
	}
	if topic != "" {
		m.Topic = topic
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m.Tags = m.Tags.Set(k, tags[k].(string))
	}
outer:
	for _, s := range sinks {
		for _, d := range dst {
			if d == s {
				continue outer
			}
		}
		dst = append(dst, s)
	}
	return dst, nil
}

func containsWildcard(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '+' || s[i] == '#' {
			return true
		}
	}
	return false
}

func (p *Policy) fail(m *gateway.Message, err error) {
	n := p.errs.Add(1)
	msg := err.Error()
	p.lastErr.Store(&msg)
	if n&(n-1) == 0 {
		p.log.Warn("routing policy failed on a message; not routed", "device", m.Device, "topic", m.Topic, "errors", n, "err", msg)
	}
}

// Errors is the number of messages the policy failed on.
func (p *Policy) Errors() uint64 { return p.errs.Load() }

// LastError is the most recent run-time error, or "".
func (p *Policy) LastError() string {
	if s := p.lastErr.Load(); s != nil {
		return *s
	}
	return ""
}

// Drops is the number of messages the policy dropped.
func (p *Policy) Drops() uint64 { return p.drops.Load() }

// NewEngine loads dir/*.rego into a rules.Engine, whose Reload re-reads
// the files and keeps the running policy when they are broken.
func NewEngine(dir string, o Options) (*rules.Engine, error) {
	return rules.NewEngine(func() (gateway.Router, error) { return Load(dir, o) })
}

// Register installs Rego policies as reg's rules factory: with
// rules.enabled true, the gateway loads rules.dir/*.rego (default
// "rules"). A configuration reload re-reads them; a broken policy rejects
// the reload and the running policy stays. Decisions may name the sinks of
// the configuration and those listed in o.Sinks (sinks the host adds with
// gateway.WithSink).
func Register(reg *gateway.Registry, o Options) {
	reg.SetRules(func(c gateway.RulesConfig, sinks []string) (gateway.Router, error) {
		dir := c.Dir
		if dir == "" {
			dir = "rules"
		}
		opts := o
		opts.Sinks = append(append([]string{}, o.Sinks...), sinks...)
		return NewEngine(dir, opts)
	})
}
