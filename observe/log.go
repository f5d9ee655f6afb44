package observe

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/iotgw/gateway"
)

// The fixed fields of every line LogHandler writes, in this order. A
// record attribute (or a logger.With attribute, outside any group) whose
// key is one of the last six fills that field instead of being written
// among the other attributes; a field nobody set is written as "".
//
// The convention for code that logs about one message: pass its device,
// connector, the rule that decided about it and the decision (e.g.
// "routed", "dropped", "dead_letter", "alert"), and, when the message is
// traced, "trace_id" and "span_id" as lowercase hex (32 and 16 digits), so
// that a grep for a trace id finds every line about that message.
const (
	FieldTime        = "time"
	FieldLevel       = "level"
	FieldMsg         = "msg"
	FieldServiceName = "service_name"
	FieldTraceID     = "trace_id"
	FieldSpanID      = "span_id"
	FieldDevice      = "device"
	FieldConnector   = "connector"
	FieldRule        = "rule"
	FieldDecision    = "decision"
)

var fixedKeys = [...]string{FieldTraceID, FieldSpanID, FieldDevice, FieldConnector, FieldRule, FieldDecision}

func fixedIndex(key string) int {
	for i, k := range fixedKeys {
		if k == key {
			return i
		}
	}
	return -1
}

// LogOptions configures NewLogHandler.
type LogOptions struct {
	// Level is the minimum level written. Default: slog.LevelInfo.
	Level slog.Leveler
	// ServiceName fills the service_name field. Default: "gatewayd".
	ServiceName string
}

// LogHandler is a slog.Handler writing one JSON object per line with the
// fixed fields time, level, msg, service_name, trace_id, span_id, device,
// connector, rule and decision first, then the other attributes (groups
// as nested objects). A call below the level costs no allocation
// (Enabled is a comparison); use Logger.LogAttrs or constant/small-integer
// arguments on hot paths, since boxing a variable into the ...any of
// Logger.Info allocates before the handler is asked.
type LogHandler struct {
	w       io.Writer
	mu      *sync.Mutex
	level   slog.Leveler
	service string
	fixed   [len(fixedKeys)]string
	pre     []byte   // attributes from WithAttrs, encoded, groups left open
	groups  []string // groups opened by WithGroup (open inside pre)
	open    int      // groups opened in pre so far
}

var _ slog.Handler = (*LogHandler)(nil)

// NewLogHandler returns a handler writing to w. Writes are serialised;
// each line is written with one Write call.
func NewLogHandler(w io.Writer, opts *LogOptions) *LogHandler {
	h := &LogHandler{w: w, mu: new(sync.Mutex), level: slog.LevelInfo, service: "gatewayd"}
	if opts != nil {
		if opts.Level != nil {
			h.level = opts.Level
		}
		if opts.ServiceName != "" {
			h.service = opts.ServiceName
		}
	}
	return h
}

// Enabled reports whether level is at or above the handler's level.
func (h *LogHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

func (h *LogHandler) clone() *LogHandler {
	c := *h
	c.pre = append([]byte(nil), h.pre...)
	c.groups = append([]string(nil), h.groups...)
	return &c
}

// WithAttrs returns a handler that adds attrs to every line.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	c := h.clone()
	for ; c.open < len(c.groups); c.open++ {
		c.pre = appendString(c.pre, c.groups[c.open])
		c.pre = append(c.pre, ":{"...)
	}
	for _, a := range attrs {
		if len(c.groups) == 0 {
			if i := fixedIndex(a.Key); i >= 0 {
				c.fixed[i] = a.Value.Resolve().String()
				continue
			}
		}
		c.pre = appendAttr(c.pre, a)
	}
	return c
}

// WithGroup returns a handler that nests later attributes under name.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := h.clone()
	c.groups = append(c.groups, name)
	return c
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Handle writes one line.
func (h *LogHandler) Handle(_ context.Context, r slog.Record) error {
	bp := bufPool.Get().(*[]byte)
	b := (*bp)[:0]
	fixed := h.fixed
	b = append(b, '{')
	if !r.Time.IsZero() {
		b = append(b, `"time":"`...)
		b = r.Time.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendString(b, r.Level.String())
	b = append(b, `,"msg":`...)
	b = appendString(b, r.Message)
	b = append(b, `,"service_name":`...)
	b = appendString(b, h.service)
	inGroup := len(h.groups) > 0
	if !inGroup {
		r.Attrs(func(a slog.Attr) bool {
			if i := fixedIndex(a.Key); i >= 0 {
				fixed[i] = a.Value.Resolve().String()
			}
			return true
		})
	}
	for i, k := range fixedKeys {
		b = append(b, ',')
		b = appendString(b, k)
		b = append(b, ':')
		b = appendString(b, fixed[i])
	}
	b = append(b, ',')
	b = append(b, h.pre...)
	opened := h.open
	if r.NumAttrs() > 0 {
		for ; opened < len(h.groups); opened++ {
			b = appendString(b, h.groups[opened])
			b = append(b, ":{"...)
		}
	}
	r.Attrs(func(a slog.Attr) bool {
		if !inGroup && fixedIndex(a.Key) >= 0 {
			return true
		}
		b = appendAttr(b, a)
		return true
	})
	for i := 0; i < opened; i++ {
		b = closeObject(b)
		b = append(b, ',')
	}
	b = closeObject(b)
	b = append(b, '\n')
	h.mu.Lock()
	_, err := h.w.Write(b)
	h.mu.Unlock()
	*bp = b
	if cap(b) <= 64<<10 {
		bufPool.Put(bp)
	}
	return err
}

// closeObject drops a trailing comma and closes the object.
func closeObject(b []byte) []byte {
	if len(b) > 0 && b[len(b)-1] == ',' {
		b = b[:len(b)-1]
	}
	return append(b, '}')
}

// appendAttr writes "key":value, (nothing for an empty attribute or
// group); a group with an empty key is inlined.
func appendAttr(b []byte, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return b
	}
	if a.Value.Kind() == slog.KindGroup {
		attrs := a.Value.Group()
		if len(attrs) == 0 {
			return b
		}
		if a.Key != "" {
			b = appendString(b, a.Key)
			b = append(b, ":{"...)
		}
		for _, g := range attrs {
			b = appendAttr(b, g)
		}
		if a.Key != "" {
			b = closeObject(b)
			b = append(b, ',')
		}
		return b
	}
	b = appendString(b, a.Key)
	b = append(b, ':')
	b = appendValue(b, a.Value)
	return append(b, ',')
}

func appendValue(b []byte, v slog.Value) []byte {
	switch v.Kind() {
	case slog.KindString:
		return appendString(b, v.String())
	case slog.KindInt64:
		return strconv.AppendInt(b, v.Int64(), 10)
	case slog.KindUint64:
		return strconv.AppendUint(b, v.Uint64(), 10)
	case slog.KindFloat64:
		f := v.Float64()
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return appendString(b, strconv.FormatFloat(f, 'g', -1, 64))
		}
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	case slog.KindBool:
		return strconv.AppendBool(b, v.Bool())
	case slog.KindDuration:
		return strconv.AppendInt(b, int64(v.Duration()), 10)
	case slog.KindTime:
		b = append(b, '"')
		b = v.Time().AppendFormat(b, time.RFC3339Nano)
		return append(b, '"')
	case slog.KindAny:
		a := v.Any()
		if err, ok := a.(error); ok {
			return appendString(b, err.Error())
		}
		if m, ok := a.(json.Marshaler); ok {
			if j, err := m.MarshalJSON(); err == nil {
				return append(b, j...)
			}
		}
		j, err := json.Marshal(a)
		if err != nil {
			return appendString(b, v.String())
		}
		return append(b, j...)
	}
	return appendString(b, v.String())
}

// appendString writes s as a JSON string (invalid UTF-8 becomes U+FFFD).
func appendString(b []byte, s string) []byte { return gateway.AppendJSONString(b, s) }
