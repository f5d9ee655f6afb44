package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// ConfigError is one problem in a configuration file: the YAML path of the
// offending field, where it is, and why it is wrong.
type ConfigError struct {
	File   string
	Path   string // e.g. connectors[2].modbus.address
	Line   int    // 1-based; 0 when unknown
	Column int
	Reason string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	if e.Line > 0 {
		b.WriteString(" (")
		if e.File != "" {
			b.WriteString(e.File)
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Column))
		b.WriteByte(')')
	}
	return b.String()
}

// yamlDecoder maps YAML nodes onto Go values by their `yaml` struct tags,
// rejecting unknown keys and type mismatches with the field's path. It
// collects every error instead of stopping at the first.
type yamlDecoder struct {
	file string
	errs []error
}

func (d *yamlDecoder) fail(n *yaml.Node, path, format string, args ...any) {
	e := &ConfigError{File: d.file, Path: path, Reason: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

func (d *yamlDecoder) err() error { return errors.Join(d.errs...) }

// sectionType lets a Section field capture its raw node for later decoding
// by a factory.
var (
	sectionType  = reflect.TypeOf(Section{})
	durationType = reflect.TypeOf(time.Duration(0))
)

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return resolveAlias(n.Content[0])
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func (d *yamlDecoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = resolveAlias(n)
	if v.Type() == sectionType {
		v.Set(reflect.ValueOf(Section{node: n, path: path, file: d.file}))
		return
	}
	if isNull(n) {
		v.Set(reflect.Zero(v.Type()))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, got %s", nodeKind(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "want a mapping, got %s", nodeKind(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, ev, joinPath(path, k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), ev)
		}
		v.Set(m)
	default:
		d.decodeScalar(n, v, path)
	}
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unexpected node"
}

func (d *yamlDecoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", nodeKind(n))
		return
	}
	t := v.Type()
	fields := map[string]int{}
	var known []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fields[name] = i
		known = append(known, name)
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := joinPath(path, k.Value)
		if seen[k.Value] {
			d.fail(k, p, "duplicate key")
			continue
		}
		seen[k.Value] = true
		fi, ok := fields[k.Value]
		if !ok {
			d.fail(k, p, "unknown key (known: %s)", strings.Join(known, ", "))
			continue
		}
		d.decode(val, v.Field(fi), p)
	}
}

func (d *yamlDecoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want a %s, got %s", v.Kind(), nodeKind(n))
		return
	}
	s := n.Value
	if v.Type() == durationType {
		dur, err := time.ParseDuration(s)
		if err != nil {
			d.fail(n, path, "want a duration like 500ms or 5s, got %q", s)
			return
		}
		v.SetInt(int64(dur))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil || n.Tag != "!!bool" {
			d.fail(n, path, "want true or false, got %q", s)
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(s, 0, v.Type().Bits())
		if err != nil {
			d.fail(n, path, "want an integer, got %q", s)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(s, 0, v.Type().Bits())
		if err != nil {
			d.fail(n, path, "want an unsigned integer of %d bits, got %q", v.Type().Bits(), s)
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			d.fail(n, path, "want a number, got %q", s)
			return
		}
		v.SetFloat(f)
	default:
		d.fail(n, path, "unsupported field type %s", v.Type())
	}
}

// Section is the raw configuration block of one component kind, handed to
// its factory. Decode it into the factory's own struct; report semantic
// problems with Errorf so they carry the YAML path.
type Section struct {
	node   *yaml.Node
	path   string
	file   string
	logger *slog.Logger
}

// Logger is the logger the component built from this block must log
// through: the gateway's (WithLogger), with the component's kind and name
// attached (for example connector=plc). Factories hand it to the
// component's logger option, so every component follows the host's
// handler, format and level. A Section not handed over by a gateway (a
// factory called directly on ParseConfig output) returns slog.Default().
func (s Section) Logger() *slog.Logger {
	if s.logger == nil {
		return slog.Default()
	}
	return s.logger
}

// Path is the YAML path of the block, e.g. "connectors[2].modbus".
func (s Section) Path() string { return s.path }

// IsZero reports whether the block is empty or absent.
func (s Section) IsZero() bool { return isNull(s.node) }

// Decode maps the block onto v (a pointer to a struct with `yaml` tags),
// rejecting unknown keys and mistyped values with their paths. An empty
// block leaves v unchanged.
func (s Section) Decode(v any) error {
	if isNull(s.node) {
		return nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("%s: Decode needs a non-nil pointer, got %T", s.path, v)
	}
	d := &yamlDecoder{file: s.file}
	d.decode(s.node, rv.Elem(), s.path)
	return d.err()
}

// Errorf returns a ConfigError for field (a key inside the block, or "" for
// the block itself) with the position of that key when present.
func (s Section) Errorf(field, format string, args ...any) error {
	e := &ConfigError{File: s.file, Path: s.path, Reason: fmt.Sprintf(format, args...)}
	n := s.node
	if field != "" {
		e.Path = joinPath(s.path, field)
		if n != nil && n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == field {
					n = n.Content[i+1]
					break
				}
			}
		}
	}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	return e
}

// fingerprint is a canonical text of the block: equal for blocks that mean
// the same, whatever their comments, quoting or layout.
func (s Section) fingerprint() string {
	var b strings.Builder
	writeCanonical(&b, resolveAlias(s.node))
	return b.String()
}

func writeCanonical(b *strings.Builder, n *yaml.Node) {
	n = resolveAlias(n)
	if n == nil {
		b.WriteString("~")
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			b.WriteString(strconv.Quote(n.Content[i].Value))
			b.WriteByte(':')
			writeCanonical(b, n.Content[i+1])
			b.WriteByte(',')
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for _, c := range n.Content {
			writeCanonical(b, c)
			b.WriteByte(',')
		}
		b.WriteByte(']')
	default:
		b.WriteString(n.Tag)
		b.WriteString(strconv.Quote(n.Value))
	}
}
