package mqtt

import (
	"fmt"
	"strings"

	"github.com/iotgw/gateway"
)

// DevicePlaceholder is replaced by the device id in ACL filters, command
// topic templates and client-mode topic patterns.
const DevicePlaceholder = "{device}"

// Default ACLs and command topic of listener mode.
const (
	DefaultPublishACL   = "devices/{device}/#"
	DefaultSubscribeACL = "devices/{device}/cmd/#"
	DefaultCommandTopic = "devices/{device}/cmd/{topic}"
)

// expand replaces {device} in each filter.
func expand(filters []string, device string) []string {
	out := make([]string, len(filters))
	for i, f := range filters {
		out[i] = strings.ReplaceAll(f, DevicePlaceholder, device)
	}
	return out
}

// validateFilters checks ACL filters before expansion.
func validateFilters(filters []string) error {
	for _, f := range filters {
		if f == "" {
			return fmt.Errorf("empty topic filter")
		}
		if err := gateway.ValidateTopicFilter(strings.ReplaceAll(f, DevicePlaceholder, "x")); err != nil {
			return err
		}
	}
	return nil
}

// allowed reports whether topic (a publish topic or a subscription
// filter) is covered by one of filters. A subscription filter is allowed
// only if every topic it can match is allowed: it must be equal to, or
// narrower than, an ACL filter.
func allowed(filters []string, topic string, subscribe bool) bool {
	for _, f := range filters {
		if subscribe {
			if filterCovers(f, topic) {
				return true
			}
		} else if gateway.MatchTopic(f, topic) {
			return true
		}
	}
	return false
}

// filterCovers reports whether every topic matched by sub is matched by
// acl.
func filterCovers(acl, sub string) bool {
	if sub == "" {
		return false // an empty filter is a protocol error in MQTT, never covered
	}
	a, s := strings.Split(acl, "/"), strings.Split(sub, "/")
	for i, al := range a {
		if al == "#" {
			return true
		}
		if i >= len(s) {
			return false
		}
		sl := s[i]
		switch {
		case sl == "#":
			return false // sub is wider than acl here
		case al == "+":
			continue
		case sl == "+" || sl != al:
			return false
		}
	}
	return len(s) == len(a)
}

// TopicPattern extracts the device id from topics: a topic filter in
// which one whole level is {device}, e.g. "sensors/{device}/#".
type TopicPattern struct {
	Filter string // the subscription filter ({device} as +)
	level  int
	raw    string
}

// ParseTopicPattern parses a pattern with exactly one {device} level.
func ParseTopicPattern(p string) (TopicPattern, error) {
	levels := strings.Split(p, "/")
	idx := -1
	for i, l := range levels {
		if l == DevicePlaceholder {
			if idx >= 0 {
				return TopicPattern{}, fmt.Errorf("pattern %q: more than one %s level", p, DevicePlaceholder)
			}
			idx = i
			levels[i] = "+"
		} else if strings.Contains(l, DevicePlaceholder) {
			return TopicPattern{}, fmt.Errorf("pattern %q: %s must fill a whole level", p, DevicePlaceholder)
		}
	}
	if idx < 0 {
		return TopicPattern{}, fmt.Errorf("pattern %q: no %s level", p, DevicePlaceholder)
	}
	f := strings.Join(levels, "/")
	if err := gateway.ValidateTopicFilter(f); err != nil {
		return TopicPattern{}, fmt.Errorf("pattern %q: %w", p, err)
	}
	return TopicPattern{Filter: f, level: idx, raw: p}, nil
}

// Device returns the device id in topic, or false when topic does not
// match the pattern or the device level is empty.
func (p TopicPattern) Device(topic string) (string, bool) {
	if !gateway.MatchTopic(p.Filter, topic) {
		return "", false
	}
	rest := topic
	for i := 0; i < p.level; i++ {
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return "", false
		}
		rest = rest[j+1:]
	}
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		rest = rest[:j]
	}
	if rest == "" {
		return "", false
	}
	return rest, true
}

// FrameTopic returns the device-side topic of a frame read from topic:
// the levels after the pattern's {device} level ("sensors/{device}/#" and
// "sensors/s1/env" give "env"), or the whole topic when nothing follows
// that level.
func (p TopicPattern) FrameTopic(topic string) string {
	return afterLevel(topic, p.level)
}

// listenerFrameTopic is the device-side topic of a PUBLISH from device in
// listener mode: the levels after the first level equal to the device id
// ("devices/sensor-1/env" from sensor-1 gives "env"), or the whole topic
// when no level names the device or nothing follows it.
func listenerFrameTopic(topic, device string) string {
	rest := topic
	for i := 0; ; i++ {
		level, after, more := strings.Cut(rest, "/")
		if level == device {
			return afterLevel(topic, i)
		}
		if !more {
			return topic
		}
		rest = after
	}
}

// afterLevel returns the levels of topic after level i (0-based), or
// topic when there are none.
func afterLevel(topic string, i int) string {
	rest := topic
	for ; i >= 0; i-- {
		_, after, ok := strings.Cut(rest, "/")
		if !ok {
			return topic
		}
		rest = after
	}
	if rest == "" {
		return topic
	}
	return rest
}

// commandTopic fills a command topic template.
func commandTopic(template, device, topic string) string {
	return strings.ReplaceAll(strings.ReplaceAll(template, DevicePlaceholder, device), "{topic}", topic)
}

// validPublishTopic reports whether t can be published to: non-empty, no
// wildcards, no NUL.
func validPublishTopic(t string) bool {
	return t != "" && !strings.ContainsAny(t, "+#\x00")
}
