package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/internal/topictmpl"
)

// Document is one rule file. Conditions may only use names the document
// declares, so a typo or a type mismatch is caught when the file loads,
// not on the first message that reaches the rule.
//
//	points:               # point names conditions use, with their types
//	  temperature: float  # float | int | string | bool
//	tags: [site]          # tag keys conditions and templates use
//	rules:
//	  - name: hot-site-a
//	    match: {topic: "plant/+/+/env", tags: {line: "1"}}
//	    when: temperature > 80 && site == "A"
//	    derive: [{name: temperature_f, expr: "temperature * 9 / 5 + 32", unit: F}]
//	    set_tags: {alarm: hot}
//	    priority: 7
//	    qos: 1
//	    topic: "plant/{site}/{device}/{topic}"
//	    sinks: [cloud]
type Document struct {
	Points map[string]string `yaml:"points"`
	Tags   []string          `yaml:"tags"`
	Rules  []Rule            `yaml:"rules"`
}

// Rule is one routing rule. A message that passes Match and When gets the
// rule's actions, applied in this fixed order: Sample, Derive, SetTags,
// Priority, QoS, Topic, Sinks, Drop, Final.
type Rule struct {
	// Name identifies the rule in errors, logs and statistics. Required and
	// unique within a rule set.
	Name string `yaml:"name"`
	// Match is checked before When and served from an index, so rules that
	// cannot match a message cost it nothing.
	Match Match `yaml:"match"`
	// When is an expr-lang expression over the declared points and tags
	// and the built-in names device, topic, connector (strings), priority
	// and qos (ints). It must be boolean. Empty means true. A condition
	// naming a point or tag the message lacks is false.
	When string `yaml:"when"`
	// Sample applies the rule's actions to 1 of every Sample matching
	// messages; the others skip this rule (later rules still apply).
	// 0 or 1 applies it to every message.
	Sample int `yaml:"sample"`
	// Derive adds computed float points (replacing a point of the same
	// name). Later rules can use them in conditions.
	Derive []Derive `yaml:"derive"`
	// SetTags adds or replaces tags.
	SetTags map[string]string `yaml:"set_tags"`
	// Priority and QoS, when set, replace the message's.
	Priority *int `yaml:"priority"`
	QoS      *int `yaml:"qos"`
	// Topic rewrites Message.Topic from a template: {device}, {topic},
	// {connector}, {id} and {<tag>} for declared tags. A message carries a
	// single topic, so the last rule that sets one wins for every sink;
	// sinks add their own layout with their own topic template.
	Topic string `yaml:"topic"`
	// Sinks adds destinations; a message goes to the union of the sinks of
	// every rule it matches.
	Sinks []string `yaml:"sinks"`
	// Drop discards the message: no sink gets it, whatever earlier rules
	// chose, and no later rule runs.
	Drop bool `yaml:"drop"`
	// Final stops evaluation after this rule.
	Final bool `yaml:"final"`

	line int // where the rule starts in its file, for errors
}

// Match selects the messages a rule looks at. Every field set must hold.
type Match struct {
	// Topic is an MQTT-style filter on the message topic ('+', final '#'),
	// as the topic was when routing began: a topic rewritten by a rule
	// does not re-select rules.
	Topic     string            `yaml:"topic"`
	Connector string            `yaml:"connector"`
	Device    string            `yaml:"device"`
	Tags      map[string]string `yaml:"tags"`
}

// Derive computes one float point.
type Derive struct {
	Name string `yaml:"name"`
	Expr string `yaml:"expr"`
	Unit string `yaml:"unit"`
}

// Options tune Compile.
type Options struct {
	// File names the source in errors.
	File string
	// Sinks, when non-nil, lists the sink names rules may route to; any
	// other name is rejected.
	Sinks []string
	// Logger receives run-time rule errors (sparsely: the 1st, 2nd, 4th,
	// 8th... of each rule). Default: discard.
	Logger *slog.Logger
}

type fieldType uint8

const (
	typeFloat fieldType = iota + 1
	typeInt
	typeString
	typeBool
)

var typeNames = map[string]fieldType{"float": typeFloat, "int": typeInt, "string": typeString, "bool": typeBool}

func (t fieldType) String() string {
	for k, v := range typeNames {
		if v == t {
			return k
		}
	}
	return "unknown"
}

func (t fieldType) zero() any {
	switch t {
	case typeFloat:
		return 0.0
	case typeInt:
		return 0
	case typeBool:
		return false
	}
	return ""
}

// builtins are always present in a condition's environment.
var builtinNames = []string{"device", "topic", "connector", "priority", "qos"}

// Set is a compiled, immutable rule set. It implements gateway.Router and
// is safe for concurrent use.
type Set struct {
	rules  []*compiledRule
	index  index
	points map[string]fieldType // names conditions read from points
	tags   map[string]bool      // tag keys conditions read
	reads  map[string]bool      // every name some expression reads
	log    *slog.Logger
	pool   sync.Pool
	errs   atomic.Uint64
	drops  atomic.Uint64
}

var _ gateway.Router = (*Set)(nil)

type compiledRule struct {
	Rule
	tags     []gateway.Tag
	cond     *vm.Program
	needs    []string // points and tags the condition and derivations read
	reads    []string // needs plus built-ins
	derive   []compiledDerive
	setTags  []gateway.Tag
	topic    topictmpl.Template
	priority int
	qos      int
	sample   uint64

	sampled atomic.Uint64
	hits    atomic.Uint64 // messages the rule matched and applied to
	errs    atomic.Uint64
	lastErr atomic.Pointer[string]
}

type compiledDerive struct {
	Derive
	prog *vm.Program
}

// RuleError is a rule rejected at load: which file and rule, and why.
type RuleError struct {
	File string
	Line int
	Rule string
	Err  error
}

func (e *RuleError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Rule != "" {
		b.WriteString("rule ")
		b.WriteString(strconv.Quote(e.Rule))
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *RuleError) Unwrap() error { return e.Err }

var yamlLine = regexp.MustCompile(`line (\d+)`)

// Parse decodes a rule file strictly: unknown fields and mistyped values
// are errors naming the line and, where it can tell, the rule.
func Parse(data []byte, file string) (*Document, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, &RuleError{File: file, Err: err}
	}
	var doc Document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &doc, nil
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			lines := ruleLines(&root)
			var errs []error
			for _, msg := range te.Errors {
				line := 0
				if m := yamlLine.FindStringSubmatch(msg); m != nil {
					line, _ = strconv.Atoi(m[1])
				}
				errs = append(errs, &RuleError{File: file, Line: line, Rule: ruleAt(lines, line), Err: errors.New(msg)})
			}
			return nil, errors.Join(errs...)
		}
		return nil, &RuleError{File: file, Err: err}
	}
	lines := ruleLines(&root)
	for i := range doc.Rules {
		if i < len(lines) {
			doc.Rules[i].line = lines[i].line
		}
	}
	return &doc, nil
}

type ruleLine struct {
	line int
	name string
}

// ruleLines finds where each entry of rules: starts and its name.
func ruleLines(root *yaml.Node) []ruleLine {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return nil
	}
	var out []ruleLine
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != "rules" || n.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		for _, e := range n.Content[i+1].Content {
			rl := ruleLine{line: e.Line}
			if e.Kind == yaml.MappingNode {
				for j := 0; j+1 < len(e.Content); j += 2 {
					if e.Content[j].Value == "name" {
						rl.name = e.Content[j+1].Value
					}
				}
			}
			out = append(out, rl)
		}
	}
	return out
}

func ruleAt(lines []ruleLine, line int) string {
	name := ""
	for _, rl := range lines {
		if rl.line <= line {
			name = rl.name
		}
	}
	return name
}

// LoadDir reads every *.yaml and *.yml file of dir in name order and
// compiles them into one Set: their declarations are merged and their rules
// run in file order, then in the order written.
func LoadDir(dir string, o Options) (*Set, error) {
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, fmt.Errorf("rules: %w", err)
		}
		files = append(files, m...)
	}
	sort.Strings(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("rules: no *.yaml rule files in %s", dir)
	}
	var docs []sourced
	var errs []error
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("rules: %w", err))
			continue
		}
		d, err := Parse(data, f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		docs = append(docs, sourced{doc: d, file: f})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return compile(docs, o)
}

type sourced struct {
	doc  *Document
	file string
}

// Compile checks and compiles doc. Every problem is reported, each as a
// RuleError naming the rule.
func Compile(doc *Document, o Options) (*Set, error) {
	return compile([]sourced{{doc: doc, file: o.File}}, o)
}

func compile(docs []sourced, o Options) (*Set, error) {
	s := &Set{points: map[string]fieldType{}, tags: map[string]bool{}, log: o.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var errs []error
	fail := func(file string, line int, rule string, format string, args ...any) {
		errs = append(errs, &RuleError{File: file, Line: line, Rule: rule, Err: fmt.Errorf(format, args...)})
	}
	env := map[string]any{"device": "", "topic": "", "connector": "", "priority": 0, "qos": 0}
	declared := map[string]string{}
	for _, b := range builtinNames {
		declared[b] = "built-in"
	}
	for _, d := range docs {
		for _, name := range sortedKeys(d.doc.Points) {
			t, ok := typeNames[d.doc.Points[name]]
			if !ok {
				fail(d.file, 0, "", "points.%s: unknown type %q (want float, int, string or bool)", name, d.doc.Points[name])
				continue
			}
			if prev, dup := declared[name]; dup && !(strings.HasPrefix(prev, "point ") && s.points[name] == t) {
				fail(d.file, 0, "", "points.%s: already declared (%s)", name, prev)
				continue
			}
			declared[name] = "point " + t.String()
			s.points[name] = t
			env[name] = t.zero()
		}
		for _, k := range d.doc.Tags {
			if prev, dup := declared[k]; dup && prev != "tag" {
				fail(d.file, 0, "", "tags: %q already declared (%s)", k, prev)
				continue
			}
			declared[k] = "tag"
			s.tags[k] = true
			env[k] = ""
		}
	}
	// Derived points are floats conditions of later rules may read.
	for _, d := range docs {
		for _, r := range d.doc.Rules {
			for _, dv := range r.Derive {
				if prev, dup := declared[dv.Name]; dup && prev != "point float" {
					fail(d.file, r.line, r.Name, "derive %q: name already declared (%s)", dv.Name, prev)
					continue
				}
				declared[dv.Name] = "point float"
				s.points[dv.Name] = typeFloat
				env[dv.Name] = 0.0
			}
		}
	}
	var known map[string]bool
	if o.Sinks != nil {
		known = map[string]bool{}
		for _, k := range o.Sinks {
			known[k] = true
		}
	}
	// Templates may name declared tags and tags any rule sets.
	tmplTags := map[string]bool{}
	for k := range s.tags {
		tmplTags[k] = true
	}
	for _, d := range docs {
		for _, r := range d.doc.Rules {
			for k := range r.SetTags {
				tmplTags[k] = true
			}
		}
	}
	names := map[string]bool{}
	for _, d := range docs {
		for _, r := range d.doc.Rules {
			cr, rerrs := compileRule(r, env, tmplTags, known)
			if r.Name != "" && names[r.Name] {
				rerrs = append(rerrs, errors.New("name used by another rule"))
			}
			names[r.Name] = true
			for _, e := range rerrs {
				errs = append(errs, &RuleError{File: d.file, Line: r.line, Rule: r.Name, Err: e})
			}
			if len(rerrs) == 0 {
				s.rules = append(s.rules, cr)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.index = buildIndex(s.rules)
	s.reads = map[string]bool{}
	for _, r := range s.rules {
		for _, n := range r.reads {
			s.reads[n] = true
		}
		for _, d := range r.derive {
			s.reads[d.Name] = true
		}
	}
	s.pool.New = func() any { return &scratch{env: make(map[string]any, len(env))} }
	return s, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// identifiers records the environment names an expression reads.
type identifiers struct {
	env   map[string]any
	names []string
}

func (v *identifiers) Visit(n *ast.Node) {
	if id, ok := (*n).(*ast.IdentifierNode); ok {
		if _, known := v.env[id.Value]; known && !slices.Contains(v.names, id.Value) {
			v.names = append(v.names, id.Value)
		}
	}
}

func compileRule(r Rule, env map[string]any, tags, sinks map[string]bool) (*compiledRule, []error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	cr := &compiledRule{Rule: r, priority: -1, qos: -1}
	if r.Name == "" {
		bad("name is required")
	}
	if err := gateway.ValidateTopicFilter(r.Match.Topic); err != nil {
		bad("match.topic: %v", err)
	}
	for _, k := range sortedKeys(r.Match.Tags) {
		cr.tags = append(cr.tags, gateway.Tag{Key: k, Value: r.Match.Tags[k]})
	}
	var needs identifiers
	needs.env = env
	if r.When != "" {
		prog, err := expr.Compile(r.When, expr.Env(env), expr.AsBool(), expr.Patch(&needs))
		if err != nil {
			bad("when: %v", oneLine(err))
		}
		cr.cond = prog
	}
	for i, d := range r.Derive {
		if d.Name == "" {
			bad("derive[%d]: name is required", i)
		}
		prog, err := expr.Compile(d.Expr, expr.Env(env), expr.AsFloat64(), expr.Patch(&needs))
		if err != nil {
			bad("derive[%d] %s: %v", i, d.Name, oneLine(err))
		}
		cr.derive = append(cr.derive, compiledDerive{Derive: d, prog: prog})
	}
	cr.reads = needs.names
	for _, n := range needs.names {
		if !slices.Contains(builtinNames, n) {
			cr.needs = append(cr.needs, n)
		}
	}
	if r.Sample < 0 {
		bad("sample: must not be negative")
	}
	cr.sample = uint64(r.Sample)
	for _, k := range sortedKeys(r.SetTags) {
		if k == "" {
			bad("set_tags: empty key")
		}
		cr.setTags = append(cr.setTags, gateway.Tag{Key: k, Value: r.SetTags[k]})
	}
	if r.Priority != nil {
		if *r.Priority < 0 || *r.Priority > 255 {
			bad("priority: %d out of range 0..255", *r.Priority)
		}
		cr.priority = *r.Priority
	}
	if r.QoS != nil {
		if *r.QoS < 0 || *r.QoS > 2 {
			bad("qos: must be 0, 1 or 2, got %d", *r.QoS)
		}
		cr.qos = *r.QoS
	}
	if r.Topic != "" {
		t, err := topictmpl.Compile(r.Topic, func(name string) bool {
			switch name {
			case "device", "topic", "connector", "id":
				return true
			}
			return tags[name]
		})
		if err != nil {
			bad("topic: %v", err)
		}
		cr.topic = t
	}
	for _, k := range r.Sinks {
		if sinks != nil && !sinks[k] {
			bad("sinks: unknown sink %q", k)
		}
	}
	if r.Drop && len(r.Sinks) > 0 {
		bad("drop and sinks contradict each other")
	}
	return cr, errs
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// index finds the rules that can match a message without scanning them
// all: a trie over topic filter levels, a map from tag to rules for rules
// without a topic filter but with tags, and a list of the rest.
type index struct {
	root   *trieNode
	byTag  map[gateway.Tag][]int32
	always []int32
}

type trieNode struct {
	lit  map[string]*trieNode
	plus *trieNode
	hash []int32 // filters ending in '#' below this level
	end  []int32 // filters ending exactly here
}

func buildIndex(rs []*compiledRule) index {
	ix := index{root: &trieNode{}, byTag: map[gateway.Tag][]int32{}}
	// A tag that some rule sets may appear after the candidates were
	// picked, so only tags no rule sets can serve as an index key.
	settable := map[string]bool{}
	for _, r := range rs {
		for _, t := range r.setTags {
			settable[t.Key] = true
		}
	}
	for i := range rs {
		r := rs[i]
		id := int32(i)
		switch {
		case r.Match.Topic != "":
			n := ix.root
			levels := strings.Split(r.Match.Topic, "/")
			for j, l := range levels {
				if l == "#" && j == len(levels)-1 {
					n.hash = append(n.hash, id)
					n = nil
					break
				}
				if l == "+" {
					if n.plus == nil {
						n.plus = &trieNode{}
					}
					n = n.plus
					continue
				}
				if n.lit == nil {
					n.lit = map[string]*trieNode{}
				}
				c := n.lit[l]
				if c == nil {
					c = &trieNode{}
					n.lit[l] = c
				}
				n = c
			}
			if n != nil {
				n.end = append(n.end, id)
			}
		default:
			key := -1
			for j, t := range r.tags {
				if !settable[t.Key] {
					key = j
					break
				}
			}
			if key < 0 {
				ix.always = append(ix.always, id)
			} else {
				ix.byTag[r.tags[key]] = append(ix.byTag[r.tags[key]], id)
			}
		}
	}
	return ix
}

func (n *trieNode) collect(topic string, ended bool, dst []int32) []int32 {
	dst = append(dst, n.hash...)
	if ended {
		return append(dst, n.end...)
	}
	level, rest, more := strings.Cut(topic, "/")
	if c := n.lit[level]; c != nil {
		dst = c.collect(rest, !more, dst)
	}
	if n.plus != nil {
		dst = n.plus.collect(rest, !more, dst)
	}
	return dst
}

func (ix *index) candidates(m *gateway.Message, dst []int32) []int32 {
	dst = append(dst, ix.always...)
	dst = ix.root.collect(m.Topic, false, dst)
	if len(ix.byTag) > 0 {
		for _, t := range m.Tags {
			dst = append(dst, ix.byTag[t]...)
		}
	}
	if len(dst) > 1 {
		slices.Sort(dst)
		dst = slices.Compact(dst)
	}
	return dst
}

// scratch is the per-evaluation state, pooled.
type scratch struct {
	cands []int32
	env   map[string]any
	vm    vm.VM
	buf   []byte
}

// mismatch marks a point whose kind does not fit its declared type.
type mismatch struct {
	name string
	have gateway.Kind
	want fieldType
}

func (s *Set) fill(sc *scratch, m *gateway.Message) {
	env := sc.env
	clear(env)
	// Only what some expression reads: boxing values into the environment
	// is most of the cost of a condition.
	r := s.reads
	if r["device"] {
		env["device"] = m.Device
	}
	if r["topic"] {
		env["topic"] = m.Topic
	}
	if r["connector"] {
		env["connector"] = m.Connector
	}
	if r["priority"] {
		env["priority"] = int(m.Priority)
	}
	if r["qos"] {
		env["qos"] = int(m.QoS)
	}
	for _, t := range m.Tags {
		if s.tags[t.Key] && r[t.Key] {
			env[t.Key] = t.Value
		}
	}
	for i := range m.Points {
		p := &m.Points[i]
		if t, ok := s.points[p.Name]; ok && r[p.Name] {
			env[p.Name] = convert(p, t)
		}
	}
}

func convert(p *gateway.Point, t fieldType) any {
	k := p.Value.Kind()
	numeric := k == gateway.KindInt || k == gateway.KindUint || k == gateway.KindFloat
	switch {
	case t == typeFloat && (numeric || k == gateway.KindBool):
		return p.Value.Float()
	case t == typeInt && (k == gateway.KindInt || k == gateway.KindUint || k == gateway.KindBool):
		return int(p.Value.Int())
	case t == typeInt && k == gateway.KindFloat:
		f := p.Value.Float()
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int(f)
		}
	case t == typeString && (k == gateway.KindString || k == gateway.KindBytes):
		return p.Value.Str()
	case t == typeBool && k == gateway.KindBool:
		return p.Value.Bool()
	}
	return mismatch{name: p.Name, have: k, want: t}
}

// Route implements gateway.Router. Rules run in order; see Rule for what
// each action does.
func (s *Set) Route(m *gateway.Message, dst []string) []string {
	sc := s.pool.Get().(*scratch)
	defer s.pool.Put(sc)
	sc.cands = s.index.candidates(m, sc.cands[:0])
	start := len(dst)
	filled := false
	for _, id := range sc.cands {
		r := s.rules[id]
		if r.Match.Connector != "" && r.Match.Connector != m.Connector ||
			r.Match.Device != "" && r.Match.Device != m.Device ||
			!hasTags(m.Tags, r.tags) {
			continue
		}
		if r.cond != nil || len(r.derive) > 0 {
			if !filled {
				s.fill(sc, m)
				filled = true
			}
			ok, err := s.present(sc, r)
			if err != nil {
				s.fail(r, m, err)
				continue
			}
			if !ok {
				continue
			}
		}
		if r.cond != nil {
			out, err := sc.vm.Run(r.cond, sc.env)
			if err != nil {
				s.fail(r, m, err)
				continue
			}
			if b, _ := out.(bool); !b {
				continue
			}
		}
		if r.sample > 1 && (r.sampled.Add(1)-1)%r.sample != 0 {
			continue
		}
		if err := s.apply(sc, r, m); err != nil {
			s.fail(r, m, err)
			continue
		}
		r.hits.Add(1)
		if r.Drop {
			s.drops.Add(1)
			return dst[:start]
		}
	sinks:
		for _, k := range r.Sinks {
			for _, d := range dst[start:] {
				if d == k {
					continue sinks
				}
			}
			dst = append(dst, k)
		}
		if r.Final {
			break
		}
	}
	return dst
}

// present reports whether the message has every name the rule reads.
func (s *Set) present(sc *scratch, r *compiledRule) (bool, error) {
	for _, n := range r.needs {
		v, ok := sc.env[n]
		if !ok {
			return false, nil
		}
		if mm, bad := v.(mismatch); bad {
			return false, fmt.Errorf("point %s is %s, declared %s", mm.name, mm.have, mm.want)
		}
	}
	return true, nil
}

// apply runs a rule's actions. What can fail (derivations, the topic) is
// computed before the message changes, so a failing rule leaves it as it
// was.
func (s *Set) apply(sc *scratch, r *compiledRule, m *gateway.Message) error {
	var derived [4]float64
	vals := derived[:0]
	for i := range r.derive {
		out, err := sc.vm.Run(r.derive[i].prog, sc.env)
		if err != nil {
			return fmt.Errorf("derive %s: %w", r.derive[i].Name, err)
		}
		f, ok := out.(float64)
		if !ok {
			return fmt.Errorf("derive %s: got %T, want a number", r.derive[i].Name, out)
		}
		vals = append(vals, f)
	}
	var topic string
	if !r.topic.IsZero() {
		var err error
		sc.buf, err = r.topic.Append(sc.buf[:0], func(name string) (string, bool) {
			switch name {
			case "device":
				return m.Device, true
			case "topic":
				return m.Topic, true
			case "connector":
				return m.Connector, true
			case "id":
				return m.ID.String(), true
			}
			for _, t := range r.setTags {
				if t.Key == name {
					return t.Value, true
				}
			}
			return m.Tags.Get(name)
		})
		if err != nil {
			return err
		}
		topic = string(sc.buf)
	}
	for i, f := range vals {
		d := &r.derive[i]
		setPoint(m, d.Name, gateway.Float(f), d.Unit)
		sc.env[d.Name] = f
	}
	for _, t := range r.setTags {
		m.Tags = m.Tags.Set(t.Key, t.Value)
		if s.tags[t.Key] && s.reads[t.Key] {
			sc.env[t.Key] = t.Value
		}
	}
	if r.priority >= 0 {
		m.Priority = gateway.Priority(r.priority)
		if s.reads["priority"] {
			sc.env["priority"] = r.priority
		}
	}
	if r.qos >= 0 {
		m.QoS = byte(r.qos)
		if s.reads["qos"] {
			sc.env["qos"] = r.qos
		}
	}
	if !r.topic.IsZero() {
		m.Topic = topic
		if s.reads["topic"] {
			sc.env["topic"] = topic
		}
	}
	return nil
}

func setPoint(m *gateway.Message, name string, v gateway.Value, unit string) {
	for i := range m.Points {
		if m.Points[i].Name == name {
			m.Points[i].Value, m.Points[i].Unit = v, unit
			return
		}
	}
	m.AddPoint(name, v, unit)
}

func hasTags(have gateway.Tags, want []gateway.Tag) bool {
	for _, w := range want {
		if v, ok := have.Get(w.Key); !ok || v != w.Value {
			return false
		}
	}
	return true
}

func (s *Set) fail(r *compiledRule, m *gateway.Message, err error) {
	n := r.errs.Add(1)
	s.errs.Add(1)
	msg := oneLine(err)
	r.lastErr.Store(&msg)
	if n&(n-1) == 0 { // 1st, 2nd, 4th, 8th...: visible without flooding
		s.log.Warn("rule failed on a message; skipped for it", "rule", r.Name,
			"device", m.Device, "topic", m.Topic, "errors", n, "err", msg)
	}
}

// RuleStats is the run-time record of one rule.
type RuleStats struct {
	Name      string
	Errors    uint64
	LastError string
}

// Stats returns per-rule error counts in rule order.
func (s *Set) Stats() []RuleStats {
	out := make([]RuleStats, len(s.rules))
	for i := range s.rules {
		r := s.rules[i]
		out[i] = RuleStats{Name: r.Name, Errors: r.errs.Load()}
		if p := r.lastErr.Load(); p != nil {
			out[i].LastError = *p
		}
	}
	return out
}

// Errors is the number of rule evaluations that failed at run time.
func (s *Set) Errors() uint64 { return s.errs.Load() }

// Drops is the number of messages a drop rule discarded.
func (s *Set) Drops() uint64 { return s.drops.Load() }

// Len is the number of rules.
func (s *Set) Len() int { return len(s.rules) }
