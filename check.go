package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// CheckConfig reports whether ApplyConfig would accept c, without changing
// anything: the same guard, the same component builds and the same
// validation, after which what was built is released. Components the
// running gateway would keep are not rebuilt. An update manager uses it
// to refuse a configuration before it is staged.
func (g *Gateway) CheckConfig(ctx context.Context, c *Config) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.guardEmpty(c); err != nil {
		return err
	}
	cc, err := c.components(g.s.registry, g.keepRunning, g.log)
	if err != nil {
		return err
	}
	_, _, _, err = g.validate(g.optionComponents().merge(cc))
	for _, s := range cc.sinks {
		if s.sink != nil {
			closeIfCloser(discardLogger, "checked sink", s.sink)
		}
	}
	for _, n := range cc.connectors {
		if n.conn != nil {
			closeIfCloser(discardLogger, "checked connector", n.conn)
		}
	}
	return err
}

// ParseSection parses a YAML document into a Section, so that packages
// outside the gateway decode their own configuration files with the same
// strict rules (unknown keys are errors, errors carry the YAML path and
// position). file names the source in errors.
func ParseSection(data []byte, file string) (Section, error) {
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&root); err != nil {
		if errors.Is(err, errEOF) {
			return Section{file: file}, nil
		}
		return Section{}, fmt.Errorf("config %s: %w", file, err)
	}
	return Section{node: resolveAlias(&root), file: file}, nil
}
