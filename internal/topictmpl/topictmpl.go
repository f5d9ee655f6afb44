// Package topictmpl compiles topic templates such as
// "plant/{site}/{device}/{topic}": literal text with {name} placeholders
// that a lookup fills in when a message is rendered.
package topictmpl

import (
	"fmt"
	"strings"
)

// Template is a compiled topic template. The zero Template renders "".
type Template struct {
	src   string
	parts []part
}

type part struct {
	lit  string
	name string // placeholder when non-empty
}

// Compile parses src. known reports whether a placeholder name is allowed;
// nil allows every name. Templates must not contain MQTT wildcards.
func Compile(src string, known func(name string) bool) (Template, error) {
	t := Template{src: src}
	rest := src
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			if strings.IndexByte(rest, '}') >= 0 {
				return Template{}, fmt.Errorf("template %q: '}' without '{'", src)
			}
			t.parts = append(t.parts, part{lit: rest})
			break
		}
		if strings.IndexByte(rest[:i], '}') >= 0 {
			return Template{}, fmt.Errorf("template %q: '}' without '{'", src)
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return Template{}, fmt.Errorf("template %q: unclosed '{'", src)
		}
		name := rest[i+1 : i+j]
		if name == "" || strings.ContainsAny(name, "{/+# ") {
			return Template{}, fmt.Errorf("template %q: bad placeholder {%s}", src, name)
		}
		if known != nil && !known(name) {
			return Template{}, fmt.Errorf("template %q: unknown placeholder {%s}", src, name)
		}
		t.parts = append(t.parts, part{name: name})
		rest = rest[i+j+1:]
	}
	for _, p := range t.parts {
		if strings.ContainsAny(p.lit, "+#") {
			return Template{}, fmt.Errorf("template %q: MQTT wildcards are not allowed in a topic", src)
		}
	}
	return t, nil
}

// String returns the source text.
func (t Template) String() string { return t.src }

// IsZero reports whether t was never compiled.
func (t Template) IsZero() bool { return t.src == "" }

// Names returns the placeholder names in order of appearance.
func (t Template) Names() []string {
	var out []string
	for _, p := range t.parts {
		if p.name != "" {
			out = append(out, p.name)
		}
	}
	return out
}

// Append renders t onto dst. A placeholder whose lookup fails is an error;
// a value carrying an MQTT wildcard is an error because it would turn a
// topic into a filter. An empty value inside the topic leaves an empty
// level; trailing slashes are trimmed so "gw/{device}/{topic}" with an
// empty topic gives "gw/dev".
func (t Template) Append(dst []byte, lookup func(name string) (string, bool)) ([]byte, error) {
	start := len(dst)
	for _, p := range t.parts {
		if p.name == "" {
			dst = append(dst, p.lit...)
			continue
		}
		v, ok := lookup(p.name)
		if !ok {
			return dst[:start], fmt.Errorf("template %q: no value for {%s}", t.src, p.name)
		}
		if strings.ContainsAny(v, "+#") {
			return dst[:start], fmt.Errorf("template %q: value %q of {%s} holds an MQTT wildcard", t.src, v, p.name)
		}
		dst = append(dst, v...)
	}
	for len(dst) > start+1 && dst[len(dst)-1] == '/' {
		dst = dst[:len(dst)-1]
	}
	return dst, nil
}
