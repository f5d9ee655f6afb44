// Command rego routes a few sample messages through the Rego policy in
// rules/ and prints each decision: the sinks, the rewritten topic and the
// priority. It shows the input and output documents of a routing policy
// (see rules/route.rego).
//
//	cd examples/rego && go run .
//	go run ./examples/rego -rules examples/rego/rules
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/rules/rego"
)

func main() {
	dir := flag.String("rules", "rules", "directory of *.rego policy files")
	flag.Parse()
	eng, err := rego.NewEngine(*dir, rego.Options{Sinks: []string{"cloud", "alarms"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "rego:", err)
		os.Exit(1)
	}
	for _, s := range []struct {
		site string
		temp float64
	}{{"A", 21.5}, {"B", 85}, {"test", 99}} {
		m := &gateway.Message{Device: "plc-1", Topic: "env", Priority: gateway.PriorityNormal, QoS: 1}
		m.Tags = m.Tags.Set("site", s.site)
		m.AddPoint("temperature", gateway.Float(s.temp), "C")
		sinks := eng.Route(m, nil)
		fmt.Printf("site=%-4s temperature=%-5v -> sinks=%v topic=%s priority=%d\n", s.site, s.temp, sinks, m.Topic, m.Priority)
	}
}
