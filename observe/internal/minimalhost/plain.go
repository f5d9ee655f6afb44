//go:build !withobserve

package main

import (
	"log/slog"
	"os"

	"github.com/iotgw/gateway"
)

func logHandler() slog.Handler { return slog.NewJSONHandler(os.Stderr, nil) }

func observeOptions() []gateway.Option { return nil }
