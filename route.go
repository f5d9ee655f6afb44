package gateway

import (
	"fmt"
	"strings"
)

// Route sends the messages it matches to the named sinks. All conditions
// that are set must hold. A message goes to the union of the sinks of every
// route it matches.
type Route struct {
	// Name labels the route in errors and logs.
	Name string
	// Topic is an MQTT-style filter on Message.Topic: levels split by '/',
	// '+' matches one level, a final '#' matches any remaining levels
	// (including none). "" matches every topic.
	Topic string
	// Connector and Device, when set, must equal the message's.
	Connector, Device string
	// Tags lists key/value pairs the message must carry.
	Tags map[string]string
	// Sinks names the destinations.
	Sinks []string
}

// ValidateTopicFilter reports why filter is not a valid MQTT-style filter.
func ValidateTopicFilter(filter string) error {
	if filter == "" {
		return nil
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		switch {
		case l == "#" && i != len(levels)-1:
			return fmt.Errorf("filter %q: '#' must be the last level", filter)
		case l != "#" && l != "+" && strings.ContainsAny(l, "#+"):
			return fmt.Errorf("filter %q: wildcards must fill a whole level", filter)
		}
	}
	return nil
}

// MatchTopic reports whether topic matches the MQTT-style filter. It does
// not allocate. An invalid filter matches what its literal levels match.
func MatchTopic(filter, topic string) bool {
	if filter == "" {
		return true
	}
	for {
		var fl, tl string
		fi := strings.IndexByte(filter, '/')
		if fi < 0 {
			fl = filter
		} else {
			fl = filter[:fi]
		}
		if fl == "#" {
			return true
		}
		ti := strings.IndexByte(topic, '/')
		if ti < 0 {
			tl = topic
		} else {
			tl = topic[:ti]
		}
		if fl != "+" && fl != tl {
			return false
		}
		switch {
		case fi < 0 && ti < 0:
			return true
		case fi < 0:
			return false // topic has more levels
		case ti < 0:
			// topic ended; "a/#" matches "a"
			return filter[fi+1:] == "#"
		}
		filter, topic = filter[fi+1:], topic[ti+1:]
	}
}

// TopicRouter is the built-in Router: a list of Routes matched in order.
// It is immutable after NewTopicRouter, so it is safe for concurrent use.
type TopicRouter struct {
	routes []compiledRoute
	all    []string // sinks for "no routes configured"
}

type compiledRoute struct {
	Route
	tags []Tag
}

var _ Router = (*TopicRouter)(nil)

// NewTopicRouter validates routes against the known sink names. With no
// routes, every message goes to every sink in sinks.
func NewTopicRouter(routes []Route, sinks []string) (*TopicRouter, error) {
	known := make(map[string]bool, len(sinks))
	for _, s := range sinks {
		known[s] = true
	}
	r := &TopicRouter{}
	if len(routes) == 0 {
		r.all = append([]string(nil), sinks...)
	}
	for i, rt := range routes {
		label := rt.Name
		if label == "" {
			label = fmt.Sprintf("routes[%d]", i)
		}
		if err := ValidateTopicFilter(rt.Topic); err != nil {
			return nil, fmt.Errorf("route %s: %w", label, err)
		}
		if len(rt.Sinks) == 0 {
			return nil, fmt.Errorf("route %s: no sinks", label)
		}
		for _, s := range rt.Sinks {
			if !known[s] {
				return nil, fmt.Errorf("route %s: unknown sink %q", label, s)
			}
		}
		c := compiledRoute{Route: rt}
		for k, v := range rt.Tags {
			c.tags = append(c.tags, Tag{Key: k, Value: v})
		}
		r.routes = append(r.routes, c)
	}
	return r, nil
}

// Route implements Router.
func (r *TopicRouter) Route(m *Message, dst []string) []string {
	if r.all != nil {
		return append(dst, r.all...)
	}
	for i := range r.routes {
		rt := &r.routes[i]
		if rt.Connector != "" && rt.Connector != m.Connector ||
			rt.Device != "" && rt.Device != m.Device ||
			!MatchTopic(rt.Topic, m.Topic) || !hasTags(m.Tags, rt.tags) {
			continue
		}
	sinks:
		for _, s := range rt.Sinks {
			for _, d := range dst {
				if d == s {
					continue sinks
				}
			}
			dst = append(dst, s)
		}
	}
	return dst
}

func hasTags(have Tags, want []Tag) bool {
	for _, w := range want {
		if v, ok := have.Get(w.Key); !ok || v != w.Value {
			return false
		}
	}
	return true
}
