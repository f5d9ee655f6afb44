package modbus

import (
	"fmt"

	"github.com/iotgw/gateway/codec/layout"
)

// Config is the YAML form of a RegisterMap (the block under a codec's
// modbus: key):
//
//	modbus:
//	  order: cdab        # default word/byte order of multi-register values
//	  points:
//	    - {name: temperature, table: hr, address: 0, type: int16, scale: 0.1, unit: C}
//	    - {name: energy, address: 2, type: uint32, unit: Wh}
//	    - {name: pump, table: coil, address: 5}
type Config struct {
	Order  string        `yaml:"order"`
	Points []PointConfig `yaml:"points"`
}

// PointConfig is one entry of Config.Points; see Point.
type PointConfig struct {
	Name    string  `yaml:"name"`
	Table   string  `yaml:"table"`
	Address uint16  `yaml:"address"`
	Type    string  `yaml:"type"`
	Order   string  `yaml:"order"`
	Bit     int     `yaml:"bit"`
	Width   int     `yaml:"width"`
	Size    int     `yaml:"size"`
	Scale   float64 `yaml:"scale"`
	Bias    float64 `yaml:"bias"`
	Unit    string  `yaml:"unit"`
}

// Build compiles the configuration.
func (c Config) Build() (*RegisterMap, error) {
	def, err := layout.ParseOrder(c.Order)
	if err != nil {
		return nil, fmt.Errorf("order: %w", err)
	}
	if len(c.Points) == 0 {
		return nil, fmt.Errorf("points: at least one point is required")
	}
	ps := make([]Point, len(c.Points))
	for i, pc := range c.Points {
		p := Point{Name: pc.Name, Address: pc.Address, Order: def, Bit: pc.Bit, Width: pc.Width,
			Size: pc.Size, Scale: pc.Scale, Bias: pc.Bias, Unit: pc.Unit}
		if pc.Table != "" {
			if p.Table, err = ParseTable(pc.Table); err != nil {
				return nil, fmt.Errorf("points[%d].table: %w", i, err)
			}
		}
		if pc.Type != "" {
			if p.Type, err = layout.ParseType(pc.Type); err != nil {
				return nil, fmt.Errorf("points[%d].type: %w", i, err)
			}
		}
		if pc.Order != "" {
			if p.Order, err = layout.ParseOrder(pc.Order); err != nil {
				return nil, fmt.Errorf("points[%d].order: %w", i, err)
			}
		}
		ps[i] = p
	}
	return New(ps)
}
