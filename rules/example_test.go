package rules_test

import (
	"fmt"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/rules"
)

func ExampleCompile() {
	doc, err := rules.Parse([]byte(`
points: {temperature: float}
tags: [site]
rules:
  - name: hot
    match: {topic: "sim/#"}
    when: temperature > 80 && site == "A"
    priority: 7
    topic: "plant/{site}/{device}/alarm"
    sinks: [cloud]
`), "example.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	set, err := rules.Compile(doc, rules.Options{Sinks: []string{"cloud"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	m := &gateway.Message{Device: "dev-1", Topic: "sim/a/dev-1/env"}
	m.Tags = m.Tags.Set("site", "A")
	m.AddPoint("temperature", gateway.Float(85), "C")
	fmt.Println(set.Route(m, nil), m.Topic, m.Priority)
	// Output: [cloud] plant/A/dev-1/alarm 7
}

func ExampleEngine() {
	load := func() (gateway.Router, error) {
		doc, err := rules.Parse([]byte("rules: [{name: all, sinks: [cloud]}]"), "inline.yaml")
		if err != nil {
			return nil, err
		}
		return rules.Compile(doc, rules.Options{})
	}
	eng, err := rules.NewEngine(load)
	if err != nil {
		fmt.Println(err)
		return
	}
	// Swap in a new rule set while traffic flows; each message sees one set.
	doc, _ := rules.Parse([]byte("rules: [{name: local-only, sinks: [local]}]"), "api.yaml")
	next, _ := rules.Compile(doc, rules.Options{})
	_ = eng.Replace(next)
	fmt.Println(eng.Route(&gateway.Message{Topic: "x"}, nil), eng.Generation())
	// Output: [local] 2
}
