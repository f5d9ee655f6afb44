package gateway_test

import (
	"context"
	"fmt"

	"github.com/iotgw/gateway"
)

// printSink prints what it is given.
type printSink struct{}

func (printSink) Publish(_ context.Context, msgs []*gateway.Message) error {
	for _, m := range msgs {
		p, _ := m.Point("raw")
		fmt.Printf("%s %s %q\n", m.Device, m.Topic, p.Value.Str())
	}
	return nil
}

// A gateway that routes one topic to a sink. Host programs add
// connectors with WithConnector; here a frame is injected directly.
func Example() {
	g, err := gateway.New(
		gateway.WithSink("console", printSink{}),
		gateway.WithRoute(gateway.Route{Topic: "plant/+/alarm/#", Sinks: []string{"console"}}),
	)
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- g.Run(ctx) }()

	for _, topic := range []string{"plant/7/alarm/high", "plant/7/telemetry"} {
		f := gateway.AcquireFrame()
		f.Device, f.Topic = "pump-7", topic
		f.Payload = append(f.Payload, "over pressure"...)
		if err := g.Inject(ctx, f); err != nil {
			panic(err)
		}
	}
	cancel() // Run drains what was accepted before it returns
	<-done
	fmt.Println("unrouted:", g.Stats().Unrouted)
	// Output:
	// pump-7 plant/7/alarm/high "over pressure"
	// unrouted: 1
}

func ExampleParseConfig() {
	_, err := gateway.ParseConfig([]byte("gateway:\n  mode: cloud\n"), "gw.yaml")
	fmt.Println(err)
	// Output: gateway.mode: unknown mode "cloud" (want edge or direct) (gw.yaml:2:9)
}
