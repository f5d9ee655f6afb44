//go:build withobserve

package main

import (
	"log/slog"
	"os"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/observe"
)

func logHandler() slog.Handler { return observe.NewLogHandler(os.Stderr, nil) }

func observeOptions() []gateway.Option {
	o, err := observe.New()
	if err != nil {
		panic(err) // no options: cannot fail
	}
	return o.GatewayOptions()
}
