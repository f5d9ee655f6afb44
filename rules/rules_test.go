package rules

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgw/gateway"
)

const schema = `
points: {temperature: float, humidity: float, state: string, count: int, running: bool}
tags: [site, line]
`

func mustSet(t testing.TB, src string) *Set {
	t.Helper()
	doc, err := Parse([]byte(src), "test.yaml")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	s, err := Compile(doc, Options{File: "test.yaml", Sinks: []string{"cloud", "local", "alarms"}})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return s
}

type msgSpec struct {
	topic, device, connector string
	tags                     map[string]string
	points                   map[string]gateway.Value
}

func message(ms msgSpec) *gateway.Message {
	m := &gateway.Message{Topic: ms.topic, Device: ms.device, Connector: ms.connector, Priority: gateway.PriorityNormal, QoS: 1}
	if m.Device == "" {
		m.Device = "dev1"
	}
	for _, k := range sortedKeys(ms.tags) {
		m.Tags = m.Tags.Set(k, ms.tags[k])
	}
	for _, k := range sortedKeys(ms.points) {
		m.AddPoint(k, ms.points[k], "")
	}
	return m
}

func TestMatching(t *testing.T) {
	s := mustSet(t, schema+`
rules:
  - {name: exact, match: {topic: "plant/a/env"}, sinks: [cloud]}
  - {name: plus, match: {topic: "plant/+/alarm"}, sinks: [alarms]}
  - {name: hash, match: {topic: "fleet/#"}, sinks: [local]}
  - {name: by-tag, match: {tags: {site: B}}, sinks: [local]}
  - {name: by-device, match: {device: plc-9}, sinks: [alarms]}
  - {name: by-connector, match: {topic: "c/#", connector: modbus}, sinks: [cloud]}
  - {name: topic-and-tag, match: {topic: "x/+", tags: {line: "2"}}, sinks: [alarms]}
`)
	cases := []struct {
		name string
		msg  msgSpec
		want []string
	}{
		{"exact", msgSpec{topic: "plant/a/env"}, []string{"cloud"}},
		{"exact needs all levels", msgSpec{topic: "plant/a/env/x"}, nil},
		{"plus one level", msgSpec{topic: "plant/b/alarm"}, []string{"alarms"}},
		{"plus not two levels", msgSpec{topic: "plant/b/c/alarm"}, nil},
		{"hash matches parent", msgSpec{topic: "fleet"}, []string{"local"}},
		{"hash matches deep", msgSpec{topic: "fleet/1/2/3"}, []string{"local"}},
		{"tag only", msgSpec{topic: "z", tags: map[string]string{"site": "B"}}, []string{"local"}},
		{"tag wrong value", msgSpec{topic: "z", tags: map[string]string{"site": "A"}}, nil},
		{"device", msgSpec{topic: "q", device: "plc-9"}, []string{"alarms"}},
		{"connector matches", msgSpec{topic: "c/1", connector: "modbus"}, []string{"cloud"}},
		{"connector differs", msgSpec{topic: "c/1", connector: "coap"}, nil},
		{"topic and tag", msgSpec{topic: "x/1", tags: map[string]string{"line": "2"}}, []string{"alarms"}},
		{"topic without tag", msgSpec{topic: "x/1"}, nil},
		{"union in rule order, no duplicates", msgSpec{topic: "fleet/a", device: "plc-9", tags: map[string]string{"site": "B"}}, []string{"local", "alarms"}},
		{"empty topic", msgSpec{topic: ""}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := s.Route(message(c.msg), nil)
			if !slices.Equal(got, c.want) {
				t.Fatalf("sinks = %v, want %v", got, c.want)
			}
		})
	}
}

func TestConditions(t *testing.T) {
	s := mustSet(t, schema+`
rules:
  - {name: hot-a, when: 'temperature > 80 && site == "A"', sinks: [alarms]}
  - {name: state, when: 'state in ["fault", "stop"] || running == false', sinks: [local]}
  - {name: count, when: 'count % 2 == 1 && device startsWith "plc"', sinks: [cloud]}
`)
	f, str, i, b := gateway.Float, gateway.String, gateway.Int, gateway.Bool
	cases := []struct {
		name string
		msg  msgSpec
		want []string
	}{
		{"hot at A", msgSpec{tags: map[string]string{"site": "A"}, points: map[string]gateway.Value{"temperature": f(81)}}, []string{"alarms"}},
		{"hot at B", msgSpec{tags: map[string]string{"site": "B"}, points: map[string]gateway.Value{"temperature": f(81)}}, nil},
		{"boundary", msgSpec{tags: map[string]string{"site": "A"}, points: map[string]gateway.Value{"temperature": f(80)}}, nil},
		{"int point read as float", msgSpec{tags: map[string]string{"site": "A"}, points: map[string]gateway.Value{"temperature": i(90)}}, []string{"alarms"}},
		{"missing tag is false", msgSpec{points: map[string]gateway.Value{"temperature": f(99)}}, nil},
		{"missing point is false", msgSpec{tags: map[string]string{"site": "A"}}, nil},
		{"string in list", msgSpec{points: map[string]gateway.Value{"state": str("fault"), "running": b(true)}}, []string{"local"}},
		{"bool", msgSpec{points: map[string]gateway.Value{"state": str("ok"), "running": b(false)}}, []string{"local"}},
		{"int and built-in", msgSpec{device: "plc-1", points: map[string]gateway.Value{"count": i(3)}}, []string{"cloud"}},
		{"int even", msgSpec{device: "plc-1", points: map[string]gateway.Value{"count": i(4)}}, nil},
		{"uint to int", msgSpec{device: "plc-1", points: map[string]gateway.Value{"count": gateway.Uint(5)}}, []string{"cloud"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := s.Route(message(c.msg), nil)
			if !slices.Equal(got, c.want) {
				t.Fatalf("sinks = %v, want %v", got, c.want)
			}
		})
	}
	if s.Errors() != 0 {
		t.Fatalf("run-time errors: %+v", s.Stats())
	}
}

func TestTemplatesAndActions(t *testing.T) {
	s := mustSet(t, schema+`
rules:
  - name: tag-site
    match: {topic: "sim/+/+/env"}
    set_tags: {zone: north}
  - name: route
    match: {topic: "sim/#"}
    when: 'temperature > 30'
    derive: [{name: temperature_f, expr: "temperature * 9 / 5 + 32", unit: F}]
    priority: 7
    qos: 0
    topic: "plant/{site}/{zone}/{device}/{topic}"
    sinks: [cloud]
  - name: alarm-on-derived
    when: 'temperature_f > 100'
    sinks: [alarms]
  - {name: drop-test, match: {tags: {site: test}}, drop: true}
  - {name: after-drop, sinks: [local]}
`)
	t.Run("route with template and derive", func(t *testing.T) {
		m := message(msgSpec{topic: "sim/a/dev1/env", tags: map[string]string{"site": "A"}, points: map[string]gateway.Value{"temperature": gateway.Float(40)}})
		got := s.Route(m, nil)
		if want := []string{"cloud", "alarms", "local"}; !slices.Equal(got, want) {
			t.Fatalf("sinks = %v, want %v", got, want)
		}
		if want := "plant/A/north/dev1/sim/a/dev1/env"; m.Topic != want {
			t.Fatalf("topic = %q, want %q", m.Topic, want)
		}
		p, ok := m.Point("temperature_f")
		if !ok || p.Value.Float() != 104 || p.Unit != "F" {
			t.Fatalf("derived point = %+v %v", p, ok)
		}
		if z, _ := m.Tags.Get("zone"); z != "north" {
			t.Fatalf("zone tag = %q", z)
		}
		if m.Priority != 7 || m.QoS != 0 {
			t.Fatalf("priority %d qos %d", m.Priority, m.QoS)
		}
	})
	t.Run("condition false leaves message alone", func(t *testing.T) {
		m := message(msgSpec{topic: "sim/a/dev1/env", tags: map[string]string{"site": "A"}, points: map[string]gateway.Value{"temperature": gateway.Float(20)}})
		got := s.Route(m, nil)
		if !slices.Equal(got, []string{"local"}) || m.Topic != "sim/a/dev1/env" || m.Priority != gateway.PriorityNormal {
			t.Fatalf("sinks %v topic %q priority %d", got, m.Topic, m.Priority)
		}
	})
	t.Run("drop discards earlier sinks and stops", func(t *testing.T) {
		m := message(msgSpec{topic: "sim/a/dev1/env", tags: map[string]string{"site": "test"}, points: map[string]gateway.Value{"temperature": gateway.Float(40)}})
		if got := s.Route(m, []string{"keep"}); !slices.Equal(got, []string{"keep"}) {
			t.Fatalf("sinks = %v, want only what the caller had", got)
		}
		if s.Drops() != 1 {
			t.Fatalf("drops = %d", s.Drops())
		}
	})
	t.Run("missing template value is a counted error", func(t *testing.T) {
		m := message(msgSpec{topic: "sim/a/dev1/env", points: map[string]gateway.Value{"temperature": gateway.Float(40)}})
		got := s.Route(m, nil)
		// route fails (no {site}); alarm-on-derived then lacks temperature_f.
		if !slices.Equal(got, []string{"local"}) {
			t.Fatalf("sinks = %v", got)
		}
		if m.Topic != "sim/a/dev1/env" {
			t.Fatalf("failed rule changed the topic to %q", m.Topic)
		}
		if _, ok := m.Point("temperature_f"); ok {
			t.Fatal("failed rule added its derived point")
		}
		st := s.Stats()
		if st[1].Name != "route" || st[1].Errors != 1 || !strings.Contains(st[1].LastError, "{site}") {
			t.Fatalf("stats = %+v", st)
		}
	})
}

func TestSample(t *testing.T) {
	s := mustSet(t, schema+`
rules:
  - {name: one-in-ten, match: {topic: "s/#"}, sample: 10, sinks: [cloud]}
  - {name: all, match: {topic: "s/#"}, sinks: [local]}
`)
	var cloud, local int
	for i := 0; i < 1000; i++ {
		for _, k := range s.Route(message(msgSpec{topic: "s/x"}), nil) {
			switch k {
			case "cloud":
				cloud++
			case "local":
				local++
			}
		}
	}
	if cloud != 100 || local != 1000 {
		t.Fatalf("cloud %d local %d, want 100 and 1000", cloud, local)
	}
}

func TestFinal(t *testing.T) {
	s := mustSet(t, schema+`
rules:
  - {name: first, match: {topic: "f"}, sinks: [cloud], final: true}
  - {name: second, match: {topic: "f"}, sinks: [local]}
`)
	if got := s.Route(message(msgSpec{topic: "f"}), nil); !slices.Equal(got, []string{"cloud"}) {
		t.Fatalf("sinks = %v", got)
	}
}

func TestBadRulesRejected(t *testing.T) {
	cases := []struct {
		name, rules string
		want        []string
	}{
		{"syntax", `[{name: broken, when: "temperature > > 3", sinks: [cloud]}]`, []string{`test.yaml:`, `rule "broken"`, "when:"}},
		{"unknown field in condition", `[{name: typo, when: "temprature > 3", sinks: [cloud]}]`, []string{`rule "typo"`, "unknown name temprature"}},
		{"type mismatch", `[{name: mism, when: 'temperature > "hot"', sinks: [cloud]}]`, []string{`rule "mism"`, "mismatched types"}},
		{"not boolean", `[{name: num, when: "temperature + 1", sinks: [cloud]}]`, []string{`rule "num"`, "bool"}},
		{"unknown yaml field", "\n  - name: fieldy\n    sinkz: [cloud]", []string{`rule "fieldy"`, "sinkz", ":6"}},
		{"unknown sink", `[{name: nosink, sinks: [nowhere]}]`, []string{`rule "nosink"`, `unknown sink "nowhere"`}},
		{"bad filter", `[{name: filt, match: {topic: "a/#/b"}, sinks: [cloud]}]`, []string{`rule "filt"`, "match.topic"}},
		{"unknown template name", `[{name: tmpl, topic: "x/{nope}", sinks: [cloud]}]`, []string{`rule "tmpl"`, "{nope}"}},
		{"qos range", `[{name: q, qos: 3, sinks: [cloud]}]`, []string{`rule "q"`, "qos"}},
		{"duplicate name", `[{name: d, sinks: [cloud]}, {name: d, sinks: [local]}]`, []string{`rule "d"`, "another rule"}},
		{"missing name", `[{sinks: [cloud]}]`, []string{"name is required"}},
		{"derive not numeric", `[{name: dv, derive: [{name: x, expr: "state"}], sinks: [cloud]}]`, []string{`rule "dv"`, "derive[0] x"}},
		{"drop and sinks", `[{name: both, drop: true, sinks: [cloud]}]`, []string{`rule "both"`, "contradict"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := schema + "rules: " + c.rules + "\n"
			doc, err := Parse([]byte(src), "test.yaml")
			if err == nil {
				_, err = Compile(doc, Options{File: "test.yaml", Sinks: []string{"cloud", "local"}})
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
		})
	}
	t.Run("unknown point type", func(t *testing.T) {
		_, err := Parse([]byte("points: {x: decimal}\nrules: []\n"), "t.yaml")
		if err == nil {
			doc, _ := Parse([]byte("points: {x: decimal}\nrules: []\n"), "t.yaml")
			_, err = Compile(doc, Options{})
		}
		if err == nil || !strings.Contains(err.Error(), "decimal") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestRunTimeErrorCountedNotFatal(t *testing.T) {
	s := mustSet(t, schema+`
rules:
  - {name: needs-float, when: "temperature > 10", sinks: [alarms]}
  - {name: divides, when: "100 % count == 0", sinks: [local]}
  - {name: always, sinks: [cloud]}
`)
	// temperature arrives as a string: a type error for that message only.
	bad := message(msgSpec{points: map[string]gateway.Value{"temperature": gateway.String("hot"), "count": gateway.Int(0)}})
	if got := s.Route(bad, nil); !slices.Equal(got, []string{"cloud"}) {
		t.Fatalf("sinks = %v, want the rules that did not fail", got)
	}
	good := message(msgSpec{points: map[string]gateway.Value{"temperature": gateway.Float(11), "count": gateway.Int(5)}})
	if got := s.Route(good, nil); !slices.Equal(got, []string{"alarms", "local", "cloud"}) {
		t.Fatalf("sinks = %v", got)
	}
	st := s.Stats()
	if st[0].Errors != 1 || !strings.Contains(st[0].LastError, "declared float") {
		t.Fatalf("needs-float stats %+v", st[0])
	}
	if st[1].Errors != 1 || !strings.Contains(st[1].LastError, "zero") {
		t.Fatalf("divides stats %+v", st[1])
	}
	if s.Errors() != 2 {
		t.Fatalf("errors = %d", s.Errors())
	}
}

// TestReloadIsAtomicPerMessage routes 10,000 messages from several
// goroutines while rule sets are swapped. Each set stamps its generation
// with two separate rules; a message evaluated partly against two sets
// would carry two different stamps.
func TestReloadIsAtomicPerMessage(t *testing.T) {
	set := func(gen int) *Set {
		return mustSet(t, fmt.Sprintf(schema+`
rules:
  - {name: stamp-a, match: {topic: "t/#"}, set_tags: {a: "%[1]d"}}
  - {name: stamp-b, when: 'temperature >= 0', set_tags: {b: "%[1]d"}}
  - {name: route, match: {tags: {a: "%[1]d"}}, sinks: [cloud]}
`, gen))
	}
	var gen atomic.Int64
	gen.Store(1)
	eng, err := NewEngine(func() (gateway.Router, error) { return set(int(gen.Load())), nil })
	if err != nil {
		t.Fatal(err)
	}
	const workers, perWorker = 4, 2500
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var reloads int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			gen.Add(1)
			if err := eng.Reload(); err != nil {
				t.Error(err)
				return
			}
			reloads++
		}
	}()
	seen := make([]map[string]int, workers)
	var bad atomic.Int64
	var rw sync.WaitGroup
	for w := 0; w < workers; w++ {
		seen[w] = map[string]int{}
		rw.Add(1)
		go func(w int) {
			defer rw.Done()
			for i := 0; i < perWorker; i++ {
				m := message(msgSpec{topic: "t/x", points: map[string]gateway.Value{"temperature": gateway.Float(1)}})
				sinks := eng.Route(m, nil)
				a, _ := m.Tags.Get("a")
				b, _ := m.Tags.Get("b")
				if a == "" || a != b || !slices.Equal(sinks, []string{"cloud"}) {
					bad.Add(1)
				}
				seen[w][a]++
			}
		}(w)
	}
	rw.Wait()
	close(stop)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d of %d messages saw a mix of rule sets", bad.Load(), workers*perWorker)
	}
	gens := map[string]bool{}
	total := 0
	for _, s := range seen {
		for g, n := range s {
			gens[g] = true
			total += n
		}
	}
	if total != workers*perWorker {
		t.Fatalf("evaluated %d messages", total)
	}
	if len(gens) < 2 {
		t.Fatalf("only %d rule set generations seen during %d reloads; the test did not overlap reloads", len(gens), reloads)
	}
	t.Logf("%d messages over %d generations, %d reloads", total, len(gens), reloads)
}

func TestEngineReloadKeepsOldOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(schema + "rules: [{name: r, sinks: [cloud]}]\n")
	eng, err := NewEngine(func() (gateway.Router, error) { return LoadDir(dir, Options{}) })
	if err != nil {
		t.Fatal(err)
	}
	write(schema + "rules: [{name: broken, when: 'temperature >', sinks: [local]}]\n")
	err = eng.Reload()
	if err == nil || !strings.Contains(err.Error(), `a.yaml:4: rule "broken"`) {
		t.Fatalf("reload error = %v", err)
	}
	if got := eng.Route(message(msgSpec{topic: "x"}), nil); !slices.Equal(got, []string{"cloud"}) {
		t.Fatalf("after a failed reload sinks = %v, want the old rules", got)
	}
	if eng.Generation() != 1 {
		t.Fatalf("generation %d", eng.Generation())
	}
	write(schema + "rules: [{name: r2, sinks: [local]}]\n")
	if err := eng.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := eng.Route(message(msgSpec{topic: "x"}), nil); !slices.Equal(got, []string{"local"}) {
		t.Fatalf("sinks = %v", got)
	}
	if err := eng.Replace(nil); err == nil {
		t.Fatal("nil accepted")
	}
	var re *RuleError
	_, err = LoadDir(t.TempDir(), Options{})
	if err == nil || errors.As(err, &re) {
		t.Fatalf("empty dir: %v", err)
	}
}

func FuzzParseCompile(f *testing.F) {
	f.Add([]byte(schema + "rules: [{name: a, when: 'temperature > 3', topic: 'x/{site}', sinks: [cloud]}]"))
	f.Add([]byte("rules: [{name: b, match: {topic: 'a/+/#'}, drop: true}]"))
	f.Add([]byte("points: {x: int}\nrules: [{name: c, derive: [{name: y, expr: 'x * 2'}], sinks: [cloud]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := Parse(data, "fuzz.yaml")
		if err != nil {
			return
		}
		s, err := Compile(doc, Options{})
		if err != nil {
			return
		}
		m := message(msgSpec{topic: "x/y", tags: map[string]string{"site": "A"}, points: map[string]gateway.Value{"x": gateway.Int(2), "temperature": gateway.Float(5)}})
		s.Route(m, nil)
	})
}

func TestWatchReloadsOnChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("rules: [{name: one, sinks: [cloud]}]\n")
	eng, err := NewEngine(func() (gateway.Router, error) { return LoadDir(dir, Options{}) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errs := make(chan error, 4)
	done := make(chan error, 1)
	go func() { done <- eng.Watch(ctx, dir, func(err error) { errs <- err }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	routesTo := func(want string) bool {
		got := eng.Route(message(msgSpec{topic: "x"}), nil)
		return len(got) == 1 && got[0] == want
	}
	deadline := time.Now().Add(5 * time.Second)
	for !routesTo("local") {
		if time.Now().After(deadline) {
			t.Fatal("edit not picked up")
		}
		write("rules: [{name: two, sinks: [local]}]\n")
		time.Sleep(200 * time.Millisecond)
	}
	write("rules: [{name: broken, when: 'x >', sinks: [cloud]}]\n")
	select {
	case err := <-errs:
		if !strings.Contains(err.Error(), `rule "broken"`) {
			t.Fatalf("watch error %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("broken edit not reported")
	}
	if !routesTo("local") {
		t.Fatal("broken edit replaced the running rules")
	}
}
