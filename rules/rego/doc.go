// Package rego routes messages with Open Policy Agent Rego policies: the
// adapter behind rules.enabled: true, which loads rules/*.rego. It lives in
// its own package so a firmware that does not import it does not link OPA.
//
//	rego.Register(reg, rego.Options{})   // rules.enabled: true now loads rules/*.rego
//	eng, err := rego.NewEngine("rules", rego.Options{})
//	g, err := gateway.New(gateway.WithRouter(eng), ...)
//
// A policy is package gateway and defines decision for each message; the
// input and output documents are described in
// examples/rego/rules/route.rego. Policies are parsed as Rego v1 and
// compiled once; a file that does not parse or compile is rejected with
// its file, line and reason, and the running policy keeps routing.
//
// The cost: Rego evaluation takes about 14 µs per message, roughly 80 times
// the expression rules of package rules, and linking OPA adds about 22 MB
// to a static linux/arm64 binary. Use it where policy is owned by another
// team or shared with other OPA deployments.
package rego
