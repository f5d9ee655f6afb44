//go:build !gw_noshaping

package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/shaping"
)

func init() {
	addPart(partShaping, func(d *daemon) error {
		path := d.fs.String("shaping", "", "YAML file with a shaping block (see examples/shaping): shape the host NIC with eBPF while the gateway runs; needs root (default: no shaping)")
		d.before = append(d.before, func(io.Writer) (func(), error) {
			if *path == "" {
				return nil, nil
			}
			data, err := os.ReadFile(*path)
			if err != nil {
				return nil, fmt.Errorf("-shaping: %w", err)
			}
			cfg, err := shaping.ParseConfig(data)
			if err != nil {
				return nil, fmt.Errorf("-shaping %s: %w", *path, err)
			}
			d.opts = append(d.opts, gateway.WithShaper(&fileShaper{cfg: cfg}, gateway.Policy{Interface: cfg.Interface}))
			return nil, nil
		})
		return nil
	})
}

// fileShaper attaches the shaper from the -shaping file when the gateway
// starts; the gateway logs a failure and runs unshaped.
type fileShaper struct {
	cfg shaping.Config
	s   *shaping.Shaper
}

func (f *fileShaper) Apply(ctx context.Context, _ gateway.Policy) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if f.s != nil {
		return f.s.Update(f.cfg)
	}
	s, err := shaping.New(f.cfg)
	if err != nil {
		return err
	}
	f.s = s
	return nil
}

func (f *fileShaper) Close() error {
	if f.s == nil {
		return nil
	}
	return f.s.Close()
}
