// Command customcodec shows a vendor codec for an invented binary frame,
// registered next to the reference codecs and chosen from YAML.
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"time"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec"
)

const config = `
codecs:
  - name: vendor
    select:
      rules:
        - device: "acme-*"
          codec: {acme: {prefix: "ch"}}
      default: {json: {}}
`

// printSink prints every message it is given.
type printSink struct{ done chan struct{} }

func (s printSink) Publish(_ context.Context, msgs []*gateway.Message) error {
	for _, m := range msgs {
		fmt.Printf("%s %s:", m.Device, m.Topic)
		for _, p := range m.Points {
			fmt.Printf(" %s=%v", p.Name, p.Value)
		}
		fmt.Println()
		s.done <- struct{}{}
	}
	return nil
}

func main() {
	reg := gateway.NewRegistry()
	if err := codec.Register(reg, codec.Kind{Name: "acme", Factory: newACME}); err != nil {
		log.Fatal(err)
	}
	cfg, err := gateway.ParseConfig([]byte(config), "customcodec.yaml")
	if err != nil {
		log.Fatal(err)
	}
	sink := printSink{done: make(chan struct{}, 2)}
	g, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg), gateway.WithSink("stdout", sink),
		gateway.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()

	inject := func(device, topic string, payload []byte) {
		f := gateway.AcquireFrame()
		f.Device, f.Topic, f.Payload = device, topic, append(f.Payload, payload...)
		if err := g.Inject(ctx, f); err != nil {
			log.Fatal(err)
		}
	}
	inject("acme-7", "acme/7/data", []byte{0xAC, 0x02, 0x01, 0x08, 0xFC, 0x02, 0xFF, 0x9C})
	inject("th-1", "sensors/th-1", []byte(`{"temperature":21.5}`))
	for i := 0; i < 2; i++ {
		select {
		case <-sink.done:
		case <-time.After(5 * time.Second):
			log.Fatal("no message decoded")
		}
	}
	cancel()
	if err := <-done; err != nil && err != context.Canceled {
		log.Fatal(err)
	}
}
