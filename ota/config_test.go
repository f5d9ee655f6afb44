package ota

import (
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	k := newKeyring(t, "alice", "bob")
	ok := "ota:\n  dir: /tmp/x\n  trusted_keys: [" + k.vkeys[0] + ", " + k.vkeys[1] + "]\n  threshold: 2\n  sources: {dir: /media/usb}\n"
	c, err := ParseConfig([]byte(ok), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Probation != 30*time.Second || c.CheckInterval != 500*time.Millisecond || c.Poll != time.Minute || c.Threshold != 2 {
		t.Fatalf("defaults: %+v", c)
	}
	bad := []struct{ yaml, want string }{
		{"ota:\n  dir: /x\n  trusted_keys: [" + k.vkeys[0] + "]\n  sources: {dir: /m}\n  probaton: 3s\n", "ota.probaton"},
		{"ota:\n  trusted_keys: [" + k.vkeys[0] + "]\n  sources: {dir: /m}\n", "ota.dir: required"},
		{"ota:\n  dir: /x\n  trusted_keys: [" + k.vkeys[0] + "]\n  threshold: 2\n  sources: {dir: /m}\n", "ota.threshold"},
		{"ota:\n  dir: /x\n  trusted_keys: [nonsense]\n  sources: {dir: /m}\n", "ota.trusted_keys"},
		{"ota:\n  dir: /x\n  trusted_keys: [" + k.vkeys[0] + "]\n", "ota.sources"},
		{"ota:\n  dir: /x\n  trusted_keys: [" + k.vkeys[0] + "]\n  sources: {mqtt: {brokr: x}}\n", "ota.sources.mqtt.brokr"},
		{"ota:\n  dir: /x\n  trusted_keys: [" + k.vkeys[0] + "]\n  probation: soon\n  sources: {dir: /m}\n", "ota.probation"},
		{"gateway: {}\n", "ota"},
	}
	for _, b := range bad {
		_, err := ParseConfig([]byte(b.yaml), "gw.yaml")
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%q: got %v, want an error naming %s", b.yaml, err, b.want)
		}
	}
}
