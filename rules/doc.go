// Package rules is the gateway's rule engine: a gateway.Router that decides,
// per message, which sinks get it and how it is changed on the way, from
// rules with a match (topic filter, connector, device, tags), a condition
// on point values and tags compiled once with expr-lang, and actions
// (route with a topic template, drop, sample 1:N, priority, QoS, tags,
// derived points).
//
//	eng, err := rules.NewEngine(func() (gateway.Router, error) { return rules.LoadDir("rules", rules.Options{}) })
//	g, err := gateway.New(gateway.WithRouter(eng), gateway.WithSink("cloud", sink))
//	err = eng.Reload() // after editing rules/*.yaml; a bad file keeps the running rules
//
// With YAML configuration, Register makes rules.enabled: true load
// rules.dir/*.yaml instead (package rules/rego does the same for *.rego).
//
// Rules are indexed by topic filter and tag, so a message only meets the
// rules that can match it: the cost per message follows the rules that
// apply, not the size of the rule set. Conditions use only names a rule
// file declares with their types, so a typo or a type mismatch fails the
// load with the rule's name instead of failing on traffic. A rule that
// fails on one message at run time (a point of the wrong kind, a template
// value that is missing) is skipped for that message and counted; the
// other rules and messages go on.
//
// Engine swaps whole rule sets atomically: a message is evaluated entirely
// against the set that was current when its routing began. Rule sets come
// in through Reload (re-run the loader), Replace (a set built in code or
// received over an API) and Watch (reload when files in the rule
// directory change). Register wires
// the engine to rules.enabled in the YAML configuration.
package rules
