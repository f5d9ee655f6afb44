package gateway

import (
	"testing"
)

func TestMatchTopic(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"", "anything/at/all", true},
		{"#", "a", true},
		{"#", "a/b/c", true},
		{"a/#", "a", true},
		{"a/#", "a/b", true},
		{"a/#", "ab", false},
		{"a/#", "b/a", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a//c", true},
		{"+", "a", true},
		{"+", "a/b", false},
		{"+/+", "a/b", true},
		{"a/b", "a/b", true},
		{"a/b", "a/b/", false},
		{"a/b/", "a/b/", true},
		{"a/b", "a/bc", false},
		{"plant/+/alarm/#", "plant/7/alarm/high/now", true},
		{"plant/+/alarm/#", "plant/7/temp", false},
	}
	for _, c := range cases {
		if got := MatchTopic(c.filter, c.topic); got != c.want {
			t.Errorf("MatchTopic(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestValidateTopicFilter(t *testing.T) {
	for _, ok := range []string{"", "#", "a/#", "+/b/+", "a/b"} {
		if err := ValidateTopicFilter(ok); err != nil {
			t.Errorf("%q rejected: %v", ok, err)
		}
	}
	for _, bad := range []string{"a/#/b", "a#", "a/b+", "#/a"} {
		if err := ValidateTopicFilter(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTopicRouter(t *testing.T) {
	r, err := NewTopicRouter([]Route{
		{Name: "alarms", Topic: "plant/+/alarm/#", Sinks: []string{"pager", "archive"}},
		{Name: "site-a", Tags: map[string]string{"site": "A"}, Sinks: []string{"archive"}},
		{Name: "plc", Connector: "modbus", Device: "plc1", Sinks: []string{"ops"}},
	}, []string{"pager", "archive", "ops"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		m    Message
		want []string
	}{
		{"alarm", Message{Topic: "plant/1/alarm/x"}, []string{"pager", "archive"}},
		{"alarm at site A dedups", Message{Topic: "plant/1/alarm", Tags: Tags{{"site", "A"}}}, []string{"pager", "archive"}},
		{"tag only", Message{Topic: "x", Tags: Tags{{"site", "A"}}}, []string{"archive"}},
		{"wrong tag", Message{Topic: "x", Tags: Tags{{"site", "B"}}}, nil},
		{"device", Message{Topic: "x", Connector: "modbus", Device: "plc1"}, []string{"ops"}},
		{"other device", Message{Topic: "x", Connector: "modbus", Device: "plc2"}, nil},
	}
	for _, c := range cases {
		got := r.Route(&c.m, nil)
		if len(got) != len(c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: got %v, want %v", c.name, got, c.want)
			}
		}
	}
	all, _ := NewTopicRouter(nil, []string{"a", "b"})
	if got := all.Route(&Message{Topic: "z"}, nil); len(got) != 2 {
		t.Errorf("no routes: got %v, want every sink", got)
	}
}

func TestRouteDoesNotAllocate(t *testing.T) {
	r, _ := NewTopicRouter([]Route{
		{Topic: "plant/+/alarm/#", Sinks: []string{"a"}},
		{Tags: map[string]string{"site": "A"}, Sinks: []string{"b"}},
	}, []string{"a", "b"})
	m := &Message{Topic: "plant/3/alarm/high", Tags: Tags{{"site", "A"}}}
	dst := make([]string, 0, 4)
	if n := testing.AllocsPerRun(1000, func() { dst = r.Route(m, dst[:0]) }); n != 0 {
		t.Fatalf("Route allocates %v times per call", n)
	}
}
