package topictmpl

import (
	"strings"
	"testing"
)

func TestTemplate(t *testing.T) {
	vals := map[string]string{"site": "A", "device": "plc-1", "topic": "hr/0", "empty": "", "bad": "a+b"}
	lookup := func(n string) (string, bool) { v, ok := vals[n]; return v, ok }
	cases := []struct {
		src, want, err string
	}{
		{"plant/{site}/{device}/{topic}", "plant/A/plc-1/hr/0", ""},
		{"fixed", "fixed", ""},
		{"{device}", "plc-1", ""},
		{"gw/{device}/{empty}", "gw/plc-1", ""},
		{"x/{missing}", "", "no value for {missing}"},
		{"x/{bad}", "", "wildcard"},
		{"x/{open", "", "unclosed"},
		{"x/}y", "", "without '{'"},
		{"x/{}", "", "bad placeholder"},
		{"x/+/{site}", "", "wildcards"},
		{"x/{a/b}", "", "bad placeholder"},
	}
	for _, c := range cases {
		t.Run(c.src, func(t *testing.T) {
			tm, err := Compile(c.src, nil)
			var out []byte
			if err == nil {
				out, err = tm.Append([]byte("keep:"), lookup)
			}
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || string(out) != "keep:"+c.want {
				t.Fatalf("got %q, %v; want %q", out, err, c.want)
			}
		})
	}
	if _, err := Compile("a/{x}", func(n string) bool { return n == "y" }); err == nil || !strings.Contains(err.Error(), "unknown placeholder {x}") {
		t.Fatalf("known filter: %v", err)
	}
	tm, _ := Compile("a/{x}/{y}", nil)
	if got := tm.Names(); len(got) != 2 || got[0] != "x" || got[1] != "y" {
		t.Fatalf("names %v", got)
	}
}

func FuzzCompile(f *testing.F) {
	f.Add("plant/{site}/{device}/{topic}")
	f.Add("{a}{b}/c")
	f.Add("x/{")
	f.Fuzz(func(t *testing.T, src string) {
		tm, err := Compile(src, nil)
		if err != nil {
			return
		}
		out, err := tm.Append(nil, func(string) (string, bool) { return "v", true })
		if err != nil {
			t.Fatalf("compiled %q but render failed: %v", src, err)
		}
		if strings.ContainsAny(string(out), "+#{}") {
			t.Fatalf("%q rendered %q", src, out)
		}
	})
}
