package codec

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec/internal/intern"
	"github.com/iotgw/gateway/codec/layout"
)

// JSONForm is the shape of a JSON payload.
type JSONForm uint8

const (
	// JSONObject is one object whose keys are point names:
	// {"temperature":21.5,"door":{"open":true}}. Nested objects flatten
	// into dotted names ("door.open").
	JSONObject JSONForm = iota
	// JSONArray is an array of point objects:
	// [{"name":"temperature","value":21.5,"unit":"C"}].
	JSONArray
)

// JSONConfig configures a JSON codec. The zero value decodes both forms
// and encodes objects.
type JSONConfig struct {
	// Form is what Encode writes (default JSONObject). Decode accepts both.
	Form JSONForm
	// TimeField names a top-level key of the object form holding the
	// reading time: a number of seconds since the Unix epoch (fractions
	// allowed) or an RFC 3339 string. It sets Message.Time and is not a
	// point. Encode writes it as an RFC 3339 string. Default: none.
	TimeField string
	// Units gives points without a unit of their own (the object form
	// has none) a unit, by point name.
	Units map[string]string
	// Separator joins the keys of nested objects (default ".").
	Separator string
	// MaxDepth bounds object nesting (default 16).
	MaxDepth int
}

// JSON is a gateway.Codec for JSON payloads, written for the hot path: a
// hand-rolled scanner, no reflection, no maps. Point names and string
// values are interned in a bounded table (4096 entries per codec), so
// steady-state decoding of devices that repeat their keys does not
// allocate; beyond the bound, strings are allocated per frame rather than
// remembered. Numbers without a fraction or exponent decode as Int (or Uint
// above MaxInt64), others as Float; null values are skipped; arrays inside
// the object form are rejected (ErrType). Strings must be valid UTF-8.
//
// Round trip: Decode(Encode(m)) reproduces m's points (names, kinds,
// values, and units from Units); Encode(Decode(x)) == x for payloads in
// the encoder's own canonical form (no whitespace, flat keys, floats
// written with a '.' or an exponent). A JSON is safe for concurrent use.
type JSON struct {
	cfg   JSONConfig
	strs  *intern.Table
	depth int
	scans sync.Pool // *jsonScan: scanner state with its key buffer
}

var _ gateway.Codec = (*JSON)(nil)

// NewJSON returns a JSON codec.
func NewJSON(cfg JSONConfig) *JSON {
	if cfg.Separator == "" {
		cfg.Separator = "."
	}
	d := cfg.MaxDepth
	if d <= 0 {
		d = 16
	}
	c := &JSON{cfg: cfg, strs: intern.New(0), depth: d}
	c.scans.New = func() any { return &jsonScan{key: make([]byte, 0, 128)} }
	return c
}

type jsonScan struct {
	b   []byte
	i   int
	key []byte // path of the current key, for errors and names
	tmp [64]byte
}

func (c *JSON) fail(s *jsonScan, err error, format string, args ...any) error {
	return &layout.FieldError{Codec: "json", Field: string(s.key), Offset: s.i, Err: fmt.Errorf("%w: "+format, append([]any{err}, args...)...)}
}

func (s *jsonScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// Decode implements gateway.Codec.
func (c *JSON) Decode(f *gateway.Frame, dst *gateway.Message) error {
	s := c.scans.Get().(*jsonScan)
	*s = jsonScan{b: f.Payload, key: s.key[:0]}
	err := c.decode(s, dst)
	s.b = nil
	c.scans.Put(s)
	return err
}

func (c *JSON) decode(s *jsonScan, dst *gateway.Message) error {
	n := len(dst.Points)
	s.ws()
	var err error
	switch {
	case s.i >= len(s.b):
		err = c.fail(s, layout.ErrSyntax, "empty payload")
	case s.b[s.i] == '{':
		err = c.object(s, dst, 0)
	case s.b[s.i] == '[':
		err = c.array(s, dst)
	default:
		err = c.fail(s, layout.ErrSyntax, "want an object or an array")
	}
	if err == nil {
		s.ws()
		if s.i != len(s.b) {
			err = c.fail(s, layout.ErrSyntax, "trailing data after the JSON value")
		}
	}
	if err != nil {
		clear(dst.Points[n:])
		dst.Points = dst.Points[:n]
	}
	return err
}

func (c *JSON) object(s *jsonScan, dst *gateway.Message, depth int) error {
	if depth >= c.depth {
		return c.fail(s, layout.ErrRange, "objects nested deeper than %d", c.depth)
	}
	s.i++ // '{'
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return nil
	}
	prefix := len(s.key)
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return c.fail(s, layout.ErrSyntax, "want a key string")
		}
		at := s.i
		k, err := c.str(s)
		if err != nil {
			return err
		}
		if len(k) == 0 {
			s.i = at
			return c.fail(s, layout.ErrMissingField, "empty key: a point needs a name")
		}
		s.key = s.key[:prefix]
		if prefix > 0 {
			s.key = append(s.key, c.cfg.Separator...)
		}
		s.key = append(s.key, k...)
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return c.fail(s, layout.ErrSyntax, "want ':' after the key")
		}
		s.i++
		s.ws()
		if s.i >= len(s.b) {
			return c.fail(s, layout.ErrSyntax, "want a value")
		}
		switch s.b[s.i] {
		case '{':
			if err := c.object(s, dst, depth+1); err != nil {
				return err
			}
		case '[':
			return c.fail(s, layout.ErrType, "arrays are not point values")
		default:
			if depth == 0 && c.cfg.TimeField != "" && string(s.key) == c.cfg.TimeField {
				if err := c.timeValue(s, dst); err != nil {
					return err
				}
				break
			}
			v, err := c.value(s)
			if err != nil {
				return err
			}
			if !v.IsZero() {
				name := c.strs.Bytes(s.key)
				dst.Points = append(dst.Points, gateway.Point{Name: name, Value: v, Unit: c.cfg.Units[name]})
			}
		}
		s.key = s.key[:prefix]
		s.ws()
		if s.i >= len(s.b) {
			return c.fail(s, layout.ErrSyntax, "unterminated object")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return c.fail(s, layout.ErrSyntax, "want ',' or '}'")
		}
	}
}

func (c *JSON) timeValue(s *jsonScan, dst *gateway.Message) error {
	at := s.i
	if s.b[s.i] == '"' {
		b, err := c.str(s)
		if err != nil {
			return err
		}
		t, err := time.Parse(time.RFC3339Nano, string(b))
		if err != nil {
			s.i = at
			return c.fail(s, layout.ErrType, "want an RFC 3339 time")
		}
		dst.Time = t
		return nil
	}
	v, err := c.value(s)
	if err != nil {
		return err
	}
	switch v.Kind() {
	case gateway.KindInt, gateway.KindUint, gateway.KindFloat:
		sec := v.Float()
		if math.Abs(sec) > 1e11 {
			s.i = at
			return c.fail(s, layout.ErrRange, "time %v is not plausible seconds since 1970", sec)
		}
		whole := math.Floor(sec)
		dst.Time = time.Unix(int64(whole), int64(math.Round((sec-whole)*1e9)))
		return nil
	}
	s.i = at
	return c.fail(s, layout.ErrType, "want seconds since the epoch or an RFC 3339 string, got %s", v.Kind())
}

// array decodes [{"name":..,"value":..,"unit":..}, ...].
func (c *JSON) array(s *jsonScan, dst *gateway.Message) error {
	s.i++ // '['
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return nil
	}
	for {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != '{' {
			return c.fail(s, layout.ErrSyntax, "want a point object")
		}
		if err := c.point(s, dst); err != nil {
			return err
		}
		s.ws()
		if s.i >= len(s.b) {
			return c.fail(s, layout.ErrSyntax, "unterminated array")
		}
		switch s.b[s.i] {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return c.fail(s, layout.ErrSyntax, "want ',' or ']'")
		}
	}
}

func (c *JSON) point(s *jsonScan, dst *gateway.Message) error {
	start := s.i
	s.i++ // '{'
	var p gateway.Point
	var hasName, hasUnit bool
	s.ws()
	for s.i < len(s.b) && s.b[s.i] != '}' {
		if s.b[s.i] != '"' {
			return c.fail(s, layout.ErrSyntax, "want a key string")
		}
		k, err := c.str(s)
		if err != nil {
			return err
		}
		s.key = append(s.key[:0], k...)
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return c.fail(s, layout.ErrSyntax, "want ':' after the key")
		}
		s.i++
		s.ws()
		switch string(s.key) {
		case "name", "unit":
			if s.i >= len(s.b) || s.b[s.i] != '"' {
				return c.fail(s, layout.ErrType, "want a string")
			}
			b, err := c.str(s)
			if err != nil {
				return err
			}
			if s.key[0] == 'n' {
				p.Name, hasName = c.strs.Bytes(b), true
			} else {
				p.Unit, hasUnit = c.strs.Bytes(b), true
			}
		case "value":
			if s.i < len(s.b) && (s.b[s.i] == '{' || s.b[s.i] == '[') {
				return c.fail(s, layout.ErrType, "a value must be a number, string, boolean or null")
			}
			v, err := c.value(s)
			if err != nil {
				return err
			}
			p.Value = v
		default:
			return c.fail(s, layout.ErrUnknownField, "point objects have name, value and unit")
		}
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ',' {
			s.i++
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] != '"' {
				return c.fail(s, layout.ErrSyntax, "want a key string")
			}
			continue
		}
		if s.i < len(s.b) && s.b[s.i] != '}' {
			return c.fail(s, layout.ErrSyntax, "want ',' or '}'")
		}
	}
	if s.i >= len(s.b) {
		return c.fail(s, layout.ErrSyntax, "unterminated point object")
	}
	s.i++ // '}'
	s.key = s.key[:0]
	if !hasName || p.Name == "" {
		s.i = start
		return c.fail(s, layout.ErrMissingField, "point object without a name")
	}
	if !hasUnit {
		p.Unit = c.cfg.Units[p.Name]
	}
	if !p.Value.IsZero() {
		dst.Points = append(dst.Points, p)
	}
	return nil
}

// value decodes a scalar; null yields the zero Value.
func (c *JSON) value(s *jsonScan) (gateway.Value, error) {
	if s.i >= len(s.b) {
		return gateway.Value{}, c.fail(s, layout.ErrSyntax, "want a value")
	}
	switch ch := s.b[s.i]; {
	case ch == '"':
		b, err := c.str(s)
		if err != nil {
			return gateway.Value{}, err
		}
		return gateway.String(c.strs.Bytes(b)), nil
	case ch == 't':
		return gateway.Bool(true), c.literal(s, "true")
	case ch == 'f':
		return gateway.Bool(false), c.literal(s, "false")
	case ch == 'n':
		return gateway.Value{}, c.literal(s, "null")
	case ch == '-' || ch >= '0' && ch <= '9':
		return c.number(s)
	}
	return gateway.Value{}, c.fail(s, layout.ErrSyntax, "unexpected %q", s.b[s.i])
}

func (c *JSON) literal(s *jsonScan, lit string) error {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return c.fail(s, layout.ErrSyntax, "want %s", lit)
	}
	s.i += len(lit)
	return nil
}

func (c *JSON) number(s *jsonScan) (gateway.Value, error) {
	start := s.i
	neg := s.b[s.i] == '-'
	if neg {
		s.i++
	}
	digits := s.i
	var u uint64
	overflow := false
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		d := uint64(s.b[s.i] - '0')
		if u > (math.MaxUint64-d)/10 {
			overflow = true
		}
		u = u*10 + d
		s.i++
	}
	if s.i == digits || s.b[digits] == '0' && s.i-digits > 1 {
		s.i = start
		return gateway.Value{}, c.fail(s, layout.ErrSyntax, "malformed number")
	}
	isFloat := false
	if s.i < len(s.b) && s.b[s.i] == '.' {
		isFloat = true
		s.i++
		d := s.i
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
		if s.i == d {
			s.i = start
			return gateway.Value{}, c.fail(s, layout.ErrSyntax, "malformed number")
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		isFloat = true
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		d := s.i
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
		if s.i == d {
			s.i = start
			return gateway.Value{}, c.fail(s, layout.ErrSyntax, "malformed number")
		}
	}
	if !isFloat && !overflow {
		switch {
		case !neg && u <= math.MaxInt64:
			return gateway.Int(int64(u)), nil
		case !neg:
			return gateway.Uint(u), nil
		case u <= 1<<63:
			return gateway.Int(int64(-u)), nil
		}
	}
	f, err := strconv.ParseFloat(string(s.b[start:s.i]), 64)
	if err != nil {
		s.i = start
		return gateway.Value{}, c.fail(s, layout.ErrRange, "number does not fit a float64")
	}
	return gateway.Float(f), nil
}

// str scans a string starting at '"' and returns its unescaped bytes: a
// sub-slice of the payload when there are no escapes, else s.tmp (or a
// heap buffer for long escaped strings). The result is valid until the
// next call.
func (c *JSON) str(s *jsonScan) ([]byte, error) {
	start := s.i
	s.i++
	from := s.i
	ascii := true
	for s.i < len(s.b) {
		ch := s.b[s.i]
		switch {
		case ch == '"':
			out := s.b[from:s.i]
			s.i++
			if !ascii && !utf8.Valid(out) {
				s.i = start
				return nil, c.fail(s, layout.ErrSyntax, "string is not valid UTF-8")
			}
			return out, nil
		case ch == '\\':
			s.i = from
			return c.escaped(s, start)
		case ch < 0x20:
			return nil, c.fail(s, layout.ErrSyntax, "control character in string")
		case ch >= 0x80:
			ascii = false
		}
		s.i++
	}
	s.i = start
	return nil, c.fail(s, layout.ErrSyntax, "unterminated string")
}

func (c *JSON) escaped(s *jsonScan, start int) ([]byte, error) {
	out := s.tmp[:0]
	for s.i < len(s.b) {
		ch := s.b[s.i]
		switch {
		case ch == '"':
			s.i++
			if !utf8.Valid(out) {
				s.i = start
				return nil, c.fail(s, layout.ErrSyntax, "string is not valid UTF-8")
			}
			return out, nil
		case ch < 0x20:
			return nil, c.fail(s, layout.ErrSyntax, "control character in string")
		case ch != '\\':
			out = append(out, ch)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			break
		}
		s.i++
		switch e := s.b[s.i]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := hex4(s.b, s.i+1)
			if !ok {
				return nil, c.fail(s, layout.ErrSyntax, "bad \\u escape")
			}
			s.i += 4
			if utf16.IsSurrogate(r) {
				r2, ok := rune(0), false
				if s.i+6 < len(s.b) && s.b[s.i+1] == '\\' && s.b[s.i+2] == 'u' {
					r2, ok = hex4(s.b, s.i+3)
				}
				if r = utf16.DecodeRune(r, r2); ok && r != utf8.RuneError {
					s.i += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, c.fail(s, layout.ErrSyntax, "bad escape \\%c", e)
		}
		s.i++
	}
	s.i = start
	return nil, c.fail(s, layout.ErrSyntax, "unterminated string")
}

func hex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, ch := range b[i : i+4] {
		switch {
		case ch >= '0' && ch <= '9':
			r = r<<4 | rune(ch-'0')
		case ch >= 'a' && ch <= 'f':
			r = r<<4 | rune(ch-'a'+10)
		case ch >= 'A' && ch <= 'F':
			r = r<<4 | rune(ch-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

// Encode implements gateway.Codec, writing cfg.Form.
func (c *JSON) Encode(m *gateway.Message, dst []byte) ([]byte, error) {
	start := len(dst)
	var err error
	if c.cfg.Form == JSONArray {
		dst = append(dst, '[')
		for i := range m.Points {
			p := &m.Points[i]
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"name":`...)
			if dst, err = appendJSONString(dst, p.Name, p.Name); err != nil {
				return dst[:start], err
			}
			dst = append(dst, `,"value":`...)
			if dst, err = appendJSONValue(dst, p); err != nil {
				return dst[:start], err
			}
			if p.Unit != "" {
				dst = append(dst, `,"unit":`...)
				if dst, err = appendJSONString(dst, p.Unit, p.Name); err != nil {
					return dst[:start], err
				}
			}
			dst = append(dst, '}')
		}
		return append(dst, ']'), nil
	}
	dst = append(dst, '{')
	if c.cfg.TimeField != "" && !m.Time.IsZero() {
		if dst, err = appendJSONString(dst, c.cfg.TimeField, c.cfg.TimeField); err != nil {
			return dst[:start], err
		}
		dst = append(dst, ':', '"')
		dst = m.Time.AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
		if len(m.Points) > 0 {
			dst = append(dst, ',')
		}
	}
	for i := range m.Points {
		p := &m.Points[i]
		if i > 0 {
			dst = append(dst, ',')
		}
		if dst, err = appendJSONString(dst, p.Name, p.Name); err != nil {
			return dst[:start], err
		}
		dst = append(dst, ':')
		if dst, err = appendJSONValue(dst, p); err != nil {
			return dst[:start], err
		}
	}
	return append(dst, '}'), nil
}

func appendJSONValue(dst []byte, p *gateway.Point) ([]byte, error) {
	v := p.Value
	switch v.Kind() {
	case gateway.KindNone:
		return append(dst, "null"...), nil
	case gateway.KindBool:
		return strconv.AppendBool(dst, v.Bool()), nil
	case gateway.KindInt:
		return strconv.AppendInt(dst, v.Int(), 10), nil
	case gateway.KindUint:
		return strconv.AppendUint(dst, v.Uint(), 10), nil
	case gateway.KindFloat:
		f := v.Float()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return dst, &layout.FieldError{Codec: "json", Field: p.Name, Offset: len(dst), Err: fmt.Errorf("%w: %v has no JSON form", layout.ErrRange, f)}
		}
		n := len(dst)
		dst = strconv.AppendFloat(dst, f, 'g', -1, 64)
		for _, ch := range dst[n:] {
			if ch == '.' || ch == 'e' {
				return dst, nil
			}
		}
		// Keep the float kind through a round trip.
		return append(dst, '.', '0'), nil
	default:
		return appendJSONString(dst, v.Str(), p.Name)
	}
}

// appendJSONString quotes s; field names the point in errors. Unlike the
// envelope, a device encoding refuses invalid UTF-8 instead of replacing it.
func appendJSONString(dst []byte, s, field string) ([]byte, error) {
	if !utf8.ValidString(s) {
		return dst, &layout.FieldError{Codec: "json", Field: field, Offset: len(dst), Err: fmt.Errorf("%w: text is not valid UTF-8", layout.ErrType)}
	}
	return gateway.AppendJSONString(dst, s), nil
}
