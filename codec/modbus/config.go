package modbus

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec/layout"
	"github.com/iotgw/gateway/internal/confpath"
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
//
// table takes the names of ParseTableName (hr or holding, coil or coils,
// ...), as the ranges of package connector/modbus do.
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
			if p.Table, err = ParseTableName(pc.Table); err != nil {
				return nil, &PointError{Index: i, Key: "table", Err: err}
			}
		}
		if pc.Type != "" {
			if p.Type, err = layout.ParseType(pc.Type); err != nil {
				return nil, &PointError{Index: i, Key: "type", Err: err}
			}
		}
		if pc.Order != "" {
			if p.Order, err = layout.ParseOrder(pc.Order); err != nil {
				return nil, &PointError{Index: i, Key: "order", Err: err}
			}
		}
		ps[i] = p
	}
	return New(ps)
}

// PointError is a problem with one point: entry Index of the points given
// to New or of Config.Points, and within it the key Key ("" for the point
// as a whole). Name is the point's name when known.
type PointError struct {
	Index int
	Name  string
	Key   string
	Err   error
}

func (e *PointError) Error() string {
	var b strings.Builder
	b.WriteString("points[" + strconv.Itoa(e.Index) + "]")
	if e.Key != "" {
		b.WriteString("." + e.Key)
	}
	if e.Name != "" {
		b.WriteString(" " + strconv.Quote(e.Name))
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *PointError) Unwrap() error { return e.Err }

// FromSection decodes a modbus: YAML block (see Config) and builds the
// register map. A problem with a point is reported at that entry of
// points: (or the entry's key) with its YAML path and position, e.g.
// "codecs[0].modbus.points[2].table: unknown Modbus table ... (gw.yaml:9:30)".
func FromSection(spec gateway.Section) (*RegisterMap, error) {
	var cfg Config
	if err := spec.Decode(&cfg); err != nil {
		return nil, err
	}
	rm, err := cfg.Build()
	if err == nil {
		return rm, nil
	}
	var pe *PointError
	switch {
	case errors.As(err, &pe):
		path := confpath.Path{"points", pe.Index}
		if pe.Key != "" {
			path = append(path, pe.Key)
		}
		reason := pe.Err.Error()
		if pe.Name != "" {
			reason = "point " + strconv.Quote(pe.Name) + ": " + reason
		}
		return nil, confpath.Errorf(spec, path, "%s", reason)
	case strings.HasPrefix(err.Error(), "order:"):
		return nil, spec.Errorf("order", "%v", err)
	}
	return nil, spec.Errorf("points", "%v", err)
}
