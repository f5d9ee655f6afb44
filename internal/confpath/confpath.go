package confpath

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/iotgw/gateway"
)

// Path names a field inside a block: map keys (string) and list indexes
// (int), outermost first. Other elements are written with fmt.Sprint and
// lead nowhere.
type Path []any

// String writes the path as the YAML paths of gateway.ConfigError do, e.g.
// "devices[1].ranges[0].table".
func (p Path) String() string {
	var b strings.Builder
	for _, e := range p {
		if i, ok := e.(int); ok {
			b.WriteString("[" + strconv.Itoa(i) + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(fmt.Sprint(e))
	}
	return b.String()
}

// Errorf returns spec.Errorf's error for the field at path: its YAML path
// and the position of its value (of the entry, for a path ending in an
// index). When the path leads nowhere (a key or entry that is absent), the
// error carries the full path and the position of the deepest part found.
func Errorf(spec gateway.Section, path Path, format string, args ...any) error {
	s := spec
	for i, e := range path {
		if k, ok := e.(string); ok && i == len(path)-1 {
			return s.Errorf(k, format, args...)
		}
		next, ok := child(s, e)
		if !ok {
			err := s.Errorf("", format, args...)
			var ce *gateway.ConfigError
			if errors.As(err, &ce) {
				rest := path[i:].String()
				if _, idx := e.(int); !idx && ce.Path != "" {
					rest = "." + rest
				}
				ce.Path += rest
			}
			return err
		}
		s = next
	}
	return s.Errorf("", format, args...)
}

// child returns the value of key e (string) or entry e (int) of s.
func child(s gateway.Section, e any) (gateway.Section, bool) {
	switch e := e.(type) {
	case string:
		var m map[string]gateway.Section
		if s.Decode(&m) != nil {
			return gateway.Section{}, false
		}
		c, ok := m[e]
		return c, ok
	case int:
		var l []gateway.Section
		if s.Decode(&l) != nil || e < 0 || e >= len(l) {
			return gateway.Section{}, false
		}
		return l[e], true
	}
	return gateway.Section{}, false
}
