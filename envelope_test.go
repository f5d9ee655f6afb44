package gateway

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestAppendJSONIsValidAndComplete(t *testing.T) {
	m := sampleMessage()
	m.Device = "weird \"dev\"\n\x01\xff"
	out := m.AppendJSON(nil)
	var env struct {
		ID     string            `json:"id"`
		Device string            `json:"device"`
		QoS    int               `json:"qos"`
		Tags   map[string]string `json:"tags"`
		Points []struct {
			Name  string `json:"name"`
			Value any    `json:"value"`
			Unit  string `json:"unit"`
		} `json:"points"`
	}
	if err := json.Unmarshal(out, &env); err != nil {
		t.Fatalf("invalid JSON %s: %v", out, err)
	}
	if env.ID != m.ID.String() || env.QoS != 1 || env.Tags["site"] != "A" || len(env.Points) != len(m.Points) {
		t.Fatalf("envelope %s", out)
	}
	if env.Device != "weird \"dev\"\n\x01\ufffd" {
		t.Fatalf("device %q", env.Device)
	}
	if env.Points[0].Value.(float64) != 21.5 || env.Points[0].Unit != "C" {
		t.Fatalf("point 0 %+v", env.Points[0])
	}
	if env.Points[len(env.Points)-1].Value != nil {
		t.Fatalf("NaN must encode as null, got %v", env.Points[len(env.Points)-1].Value)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	f.Add("plain")
	f.Add("\x00\"\\\u2028\xff")
	f.Fuzz(func(t *testing.T, s string) {
		var back string
		if err := json.Unmarshal(appendJSONString(nil, s), &back); err != nil {
			t.Fatalf("invalid JSON for %q: %v", s, err)
		}
		// Only invalid UTF-8 may change (to U+FFFD).
		if utf8.ValidString(s) && back != s {
			t.Fatalf("%q came back as %q", s, back)
		}
	})
}
