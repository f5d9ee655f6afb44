package layout

import "fmt"

// Config is the YAML form of a Layout (the block under a codec's layout:
// key):
//
//	layout:
//	  size: 16            # optional; default: end of the last field
//	  order: abcd         # default byte order: abcd | dcba | cdab | badc
//	  fields:
//	    - {name: temperature, type: int16, offset: 0, scale: 0.1, unit: C}
//	    - {name: energy, type: uint32, offset: 2, order: cdab, unit: Wh}
//	    - {name: alarm, type: bool, offset: 6, bit: 3}
//	    - {name: mode, type: bits, offset: 6, bit: 4, width: 3}
//	    - {name: serial, type: string, offset: 8, size: 8}
type Config struct {
	Size   int           `yaml:"size"`
	Order  string        `yaml:"order"`
	Fields []FieldConfig `yaml:"fields"`
}

// FieldConfig is one entry of Config.Fields; see Field for the meaning.
type FieldConfig struct {
	Name   string  `yaml:"name"`
	Type   string  `yaml:"type"`
	Offset int     `yaml:"offset"`
	Order  string  `yaml:"order"`
	Bit    int     `yaml:"bit"`
	Width  int     `yaml:"width"`
	Size   int     `yaml:"size"`
	Scale  float64 `yaml:"scale"`
	Bias   float64 `yaml:"bias"`
	Unit   string  `yaml:"unit"`
}

// Field converts the entry, with def as the order when none is given.
func (c FieldConfig) Field(def Order) (Field, error) {
	t, err := ParseType(c.Type)
	if err != nil {
		return Field{}, err
	}
	o := def
	if c.Order != "" {
		if o, err = ParseOrder(c.Order); err != nil {
			return Field{}, err
		}
	}
	return Field{Name: c.Name, Type: t, Offset: c.Offset, Order: o, Bit: c.Bit, Width: c.Width,
		Size: c.Size, Scale: c.Scale, Bias: c.Bias, Unit: c.Unit}, nil
}

// Build compiles the configuration.
func (c Config) Build() (*Layout, error) {
	def, err := ParseOrder(c.Order)
	if err != nil {
		return nil, fmt.Errorf("order: %w", err)
	}
	if len(c.Fields) == 0 {
		return nil, fmt.Errorf("fields: at least one field is required")
	}
	fs := make([]Field, len(c.Fields))
	for i, fc := range c.Fields {
		if fs[i], err = fc.Field(def); err != nil {
			return nil, fmt.Errorf("fields[%d]: %w", i, err)
		}
	}
	if c.Size < 0 {
		return nil, fmt.Errorf("size: must not be negative")
	}
	return New(fs, c.Size)
}
