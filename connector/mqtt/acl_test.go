package mqtt

import (
	"strings"
	"testing"

	"github.com/iotgw/gateway"
)

func TestFilterCovers(t *testing.T) {
	tests := []struct {
		acl, sub string
		want     bool
	}{
		{"devices/d1/#", "devices/d1/#", true},
		{"devices/d1/#", "devices/d1/cmd/+", true},
		{"devices/d1/#", "devices/d1", true},
		{"devices/d1/#", "devices/#", false},
		{"devices/d1/#", "devices/+/cmd", false},
		{"devices/d1/cmd/#", "devices/d1/#", false},
		{"devices/+/cmd", "devices/d1/cmd", true},
		{"devices/+/cmd", "devices/+/cmd", true},
		{"devices/+/cmd", "devices/d1/cmd/x", false},
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
	}
	for _, tt := range tests {
		if got := filterCovers(tt.acl, tt.sub); got != tt.want {
			t.Errorf("filterCovers(%q, %q) = %v, want %v", tt.acl, tt.sub, got, tt.want)
		}
	}
}

func TestTopicPattern(t *testing.T) {
	tests := []struct {
		pattern, topic, device string
		ok                     bool
	}{
		{"sensors/{device}/#", "sensors/s1/temp", "s1", true},
		{"sensors/{device}/#", "sensors/s1", "s1", true},
		{"sensors/{device}/#", "sensors//temp", "", false},
		{"sensors/{device}/#", "other/s1/temp", "", false},
		{"{device}", "abc", "abc", true},
		{"plant/+/{device}/state", "plant/hall/p7/state", "p7", true},
		{"plant/+/{device}/state", "plant/hall/p7/other", "", false},
	}
	for _, tt := range tests {
		p, err := ParseTopicPattern(tt.pattern)
		if err != nil {
			t.Fatal(err)
		}
		d, ok := p.Device(tt.topic)
		if d != tt.device || ok != tt.ok {
			t.Errorf("%q.Device(%q) = %q, %v; want %q, %v", tt.pattern, tt.topic, d, ok, tt.device, tt.ok)
		}
	}
	for _, bad := range []string{"sensors/#", "a/{device}/{device}", "a/x{device}", "a/#/{device}"} {
		if _, err := ParseTopicPattern(bad); err == nil {
			t.Errorf("ParseTopicPattern(%q) accepted", bad)
		}
	}
}

// FuzzTopicPattern: the device found is a whole, non-empty level of the
// topic and the topic matches the subscription filter.
func FuzzTopicPattern(f *testing.F) {
	f.Add("sensors/{device}/#", "sensors/s1/temp")
	f.Add("+/{device}", "a/b")
	f.Add("{device}/x", "/x")
	f.Fuzz(func(t *testing.T, pattern, topic string) {
		p, err := ParseTopicPattern(pattern)
		if err != nil {
			return
		}
		d, ok := p.Device(topic)
		if !ok {
			return
		}
		if d == "" || strings.Contains(d, "/") || !gateway.MatchTopic(p.Filter, topic) {
			t.Fatalf("pattern %q topic %q: device %q", pattern, topic, d)
		}
		levels := strings.Split(topic, "/")
		if p.level >= len(levels) || levels[p.level] != d {
			t.Fatalf("device %q is not level %d of %q", d, p.level, topic)
		}
	})
}

// FuzzFilterCovers: when an ACL filter covers a subscription, every
// concrete topic the subscription matches is matched by the ACL.
func FuzzFilterCovers(f *testing.F) {
	f.Add("devices/d1/#", "devices/d1/+", "devices/d1/x")
	f.Add("a/+", "a/b", "a/b")
	f.Add("/#", "", "0") // found by fuzzing: an empty filter matches everything
	f.Fuzz(func(t *testing.T, acl, sub, topic string) {
		if gateway.ValidateTopicFilter(acl) != nil || gateway.ValidateTopicFilter(sub) != nil || strings.ContainsAny(topic, "+#") {
			return
		}
		if filterCovers(acl, sub) && gateway.MatchTopic(sub, topic) && !gateway.MatchTopic(acl, topic) {
			t.Fatalf("acl %q covers %q, which matches %q, which acl does not", acl, sub, topic)
		}
	})
}

func TestRegisterStrictYAML(t *testing.T) {
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ yaml, wantErr string }{
		{"connectors:\n  - name: m\n    mqtt: {address: '127.0.0.1:0', devices: [{username: a, password: b}]}\n", ""},
		{"connectors:\n  - name: m\n    mqtt: {mode: client, broker: 'tcp://127.0.0.1:1', topics: ['s/{device}/#']}\n", ""},
		{"connectors:\n  - name: m\n    mqtt: {adress: x}\n", "connectors[0].mqtt.adress: unknown key"},
		{"connectors:\n  - name: m\n    mqtt: {mode: bridge}\n", "connectors[0].mqtt.mode: unknown mode"},
		{"connectors:\n  - name: m\n    mqtt: {mode: client, broker: 'tcp://h:1', topics: ['s/#']}\n", "connectors[0].mqtt.topics: pattern"},
		{"connectors:\n  - name: m\n    mqtt: {mode: client, broker: 'tcp://h:1', topics: ['s/{device}'], devices: []}\n", "connectors[0].mqtt.devices: only for mode: listener"},
		{"connectors:\n  - name: m\n    mqtt: {anonymous: true, broker: 'tcp://h:1'}\n", "connectors[0].mqtt.broker: only for mode: client"},
		{"connectors:\n  - name: m\n    mqtt: {devices: [{username: a}]}\n", "connectors[0].mqtt.devices: devices[0]"},
		{"connectors:\n  - name: m\n    mqtt: {anonymous: true, log_interval: 10s}\n", ""},
		{"connectors:\n  - name: m\n    mqtt: {anonymous: true, inflight_window: 16}\n", ""},
		{"connectors:\n  - name: m\n    mqtt: {anonymous: true, inflight_window: -1}\n", "connectors[0].mqtt.inflight_window: in-flight window must be positive"},
		{"connectors:\n  - name: m\n    mqtt: {mode: client, broker: 'tcp://h:1', topics: ['s/{device}'], inflight_window: 16}\n", ""},
		{"connectors:\n  - name: m\n    mqtt: {mode: client, broker: 'tcp://h:1', topics: ['s/{device}'], inflight_window: -2}\n", "connectors[0].mqtt.inflight_window: in-flight window must be positive"},
		{"connectors:\n  - name: m\n    mqtt: {anonymous: true, log_interval: -1s}\n", "connectors[0].mqtt.log_interval: log interval must be positive"},
		{"connectors:\n  - name: m\n    mqtt: {mode: client, broker: 'tcp://h:1', topics: ['s/{device}'], log_interval: 1s}\n", "connectors[0].mqtt.log_interval: only for mode: listener"},
		{"connectors:\n  - name: m\n    mqtt: {anonymous: true, tls: {cert: /nonexistent.pem, key: /nonexistent.key}}\n", "connectors[0].mqtt.tls: server certificate"},
	}
	for _, tt := range tests {
		cfg, err := gateway.ParseConfig([]byte(tt.yaml), "t.yaml")
		if err == nil {
			_, err = gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg))
		}
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%q:\n err = %v\n want %q", tt.yaml, err, tt.wantErr)
		}
	}
}

func TestFrameTopicIsThePartAfterTheDevice(t *testing.T) {
	for _, tt := range []struct{ topic, device, want string }{
		{"devices/sensor-1/env", "sensor-1", "env"},
		{"devices/sensor-1/a/b", "sensor-1", "a/b"},
		{"sensor-1/env", "sensor-1", "env"},
		{"devices/sensor-1", "sensor-1", "devices/sensor-1"},   // nothing after the device: whole topic
		{"devices/sensor-1/", "sensor-1", "devices/sensor-1/"}, // empty rest: whole topic
		{"status/other", "sensor-1", "status/other"},           // no level names the device
		{"a/sensor-1x/env", "sensor-1", "a/sensor-1x/env"},     // whole levels only
		{"sensor-1/sensor-1/env", "sensor-1", "sensor-1/env"},  // the first level naming it
	} {
		if got := listenerFrameTopic(tt.topic, tt.device); got != tt.want {
			t.Errorf("listenerFrameTopic(%q, %q) = %q, want %q", tt.topic, tt.device, got, tt.want)
		}
	}
	p, err := ParseTopicPattern("plant/+/{device}/#")
	if err != nil {
		t.Fatal(err)
	}
	for topic, want := range map[string]string{
		"plant/hall/pump-7/state":   "state",
		"plant/hall/pump-7/a/b":     "a/b",
		"plant/hall/pump-7":         "plant/hall/pump-7",
		"plant/hall/sensor-1/state": "state",
	} {
		if got := p.FrameTopic(topic); got != want {
			t.Errorf("FrameTopic(%q) = %q, want %q", topic, got, want)
		}
	}
}

func FuzzFrameTopic(f *testing.F) {
	f.Add("devices/sensor-1/env", "sensor-1", 1)
	f.Add("a//b/", "", 0)
	f.Fuzz(func(t *testing.T, topic, device string, level int) {
		for _, got := range []string{listenerFrameTopic(topic, device), afterLevel(topic, level%8)} {
			if !strings.HasSuffix(topic, got) {
				t.Fatalf("%q is not a suffix of %q", got, topic)
			}
			if got == "" && topic != "" {
				t.Fatalf("empty frame topic from %q", topic)
			}
		}
	})
}
