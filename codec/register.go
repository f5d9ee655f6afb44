package codec

import (
	"fmt"
	"sort"
	"strings"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec/layout"
	"github.com/iotgw/gateway/codec/mapping"
	"github.com/iotgw/gateway/codec/modbus"
)

// Kind is a codec kind for the YAML codecs: section: the key that names
// it and the factory that builds it from its block.
type Kind struct {
	Name    string
	Factory gateway.CodecFactory
}

// Kinds returns the kinds of this module: json, layout, modbus, mapping
// and raw (gateway.RawCodec). Register adds them, plus select.
func Kinds() []Kind {
	return []Kind{
		{"json", jsonFactory},
		{"layout", layoutFactory},
		{"modbus", modbusFactory},
		{"mapping", mappingFactory},
		{"raw", rawFactory},
	}
}

// Register adds the kinds of Kinds, the host's extra kinds, and "select"
// to reg. A select block can nest any of them, so a host's own codec can
// sit behind a device or topic rule:
//
//	codecs:
//	  - name: site
//	    select:
//	      rules:
//	        - topic: "hr/#"
//	          codec: {mapping: {source: "t: s16(hr[0]) * 0.1"}}
//	        - device: "th-*"
//	          codec: {json: {}}
//	      default: {raw: {}}
//
// It fails if a kind is registered twice.
func Register(reg *gateway.Registry, extra ...Kind) error {
	kinds := append(Kinds(), extra...)
	byName := make(map[string]gateway.CodecFactory, len(kinds))
	for _, k := range kinds {
		if _, dup := byName[k.Name]; dup || k.Name == "select" {
			return fmt.Errorf("codec: kind %q registered twice", k.Name)
		}
		byName[k.Name] = k.Factory
		if err := reg.AddCodec(k.Name, k.Factory); err != nil {
			return err
		}
	}
	return reg.AddCodec("select", selectFactory(byName))
}

func rawFactory(name string, spec gateway.Section) (gateway.Codec, error) {
	var cfg struct{}
	if err := spec.Decode(&cfg); err != nil {
		return nil, err
	}
	return gateway.RawCodec{}, nil
}

// jsonYAML is the json: block.
//
//	json:
//	  form: object          # what Encode writes: object (default) | array
//	  time_field: ts        # key holding the reading time (default none)
//	  units: {temperature: C}
//	  separator: "."        # joins nested keys (default ".")
//	  max_depth: 16
type jsonYAML struct {
	Form      string            `yaml:"form"`
	TimeField string            `yaml:"time_field"`
	Units     map[string]string `yaml:"units"`
	Separator string            `yaml:"separator"`
	MaxDepth  int               `yaml:"max_depth"`
}

func jsonFactory(name string, spec gateway.Section) (gateway.Codec, error) {
	var y jsonYAML
	if err := spec.Decode(&y); err != nil {
		return nil, err
	}
	cfg := JSONConfig{TimeField: y.TimeField, Units: y.Units, Separator: y.Separator, MaxDepth: y.MaxDepth}
	switch y.Form {
	case "", "object":
	case "array":
		cfg.Form = JSONArray
	default:
		return nil, spec.Errorf("form", "want object or array, got %q", y.Form)
	}
	if y.MaxDepth < 0 {
		return nil, spec.Errorf("max_depth", "must not be negative")
	}
	return NewJSON(cfg), nil
}

func layoutFactory(name string, spec gateway.Section) (gateway.Codec, error) {
	var cfg layout.Config
	if err := spec.Decode(&cfg); err != nil {
		return nil, err
	}
	l, err := cfg.Build()
	if err != nil {
		return nil, spec.Errorf(fieldOf(err, "fields"), "%v", err)
	}
	return l, nil
}

func modbusFactory(name string, spec gateway.Section) (gateway.Codec, error) {
	rm, err := modbus.FromSection(spec)
	if err != nil {
		return nil, err
	}
	return rm, nil
}

// fieldOf names the YAML key an error from Build is about.
func fieldOf(err error, list string) string {
	if strings.HasPrefix(err.Error(), "order:") {
		return "order"
	}
	return list
}

// mappingYAML is the mapping: block; source holds the program (see
// package codec/mapping).
type mappingYAML struct {
	Source string `yaml:"source"`
}

func mappingFactory(name string, spec gateway.Section) (gateway.Codec, error) {
	var y mappingYAML
	if err := spec.Decode(&y); err != nil {
		return nil, err
	}
	m, err := mapping.Compile(y.Source)
	if err != nil {
		return nil, spec.Errorf("source", "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return m, nil
}

type selectRuleYAML struct {
	Name      string                     `yaml:"name"`
	Connector string                     `yaml:"connector"`
	Device    string                     `yaml:"device"`
	Topic     string                     `yaml:"topic"`
	Codec     map[string]gateway.Section `yaml:"codec"`
}

type selectYAML struct {
	Rules   []selectRuleYAML           `yaml:"rules"`
	Default map[string]gateway.Section `yaml:"default"`
}

func selectFactory(kinds map[string]gateway.CodecFactory) gateway.CodecFactory {
	build := func(name, what string, parent gateway.Section, block map[string]gateway.Section) (gateway.Codec, error) {
		if len(block) != 1 {
			return nil, parent.Errorf(what, "want exactly one codec kind key (for example {json: {}}), got %d", len(block))
		}
		for kind, sec := range block {
			f := kinds[kind]
			if f == nil {
				known := make([]string, 0, len(kinds))
				for k := range kinds {
					known = append(known, k)
				}
				sort.Strings(known)
				return nil, sec.Errorf("", "unknown codec kind %q (this build knows: %s)", kind, strings.Join(known, ", "))
			}
			return f(name, sec)
		}
		return nil, nil
	}
	return func(name string, spec gateway.Section) (gateway.Codec, error) {
		var y selectYAML
		if err := spec.Decode(&y); err != nil {
			return nil, err
		}
		if len(y.Rules) == 0 {
			return nil, spec.Errorf("rules", "at least one rule is required")
		}
		rules := make([]Rule, len(y.Rules))
		for i, ry := range y.Rules {
			what := fmt.Sprintf("rules[%d]", i)
			if ry.Codec == nil {
				return nil, spec.Errorf("rules", "%s: codec is required", what)
			}
			c, err := build(name+"/"+what, "rules", spec, ry.Codec)
			if err != nil {
				return nil, err
			}
			if err := gateway.ValidateTopicFilter(ry.Topic); err != nil {
				return nil, spec.Errorf("rules", "%s.topic: %v", what, err)
			}
			rules[i] = Rule{Name: ry.Name, Connector: ry.Connector, Device: ry.Device, Topic: ry.Topic, Codec: c}
		}
		var def gateway.Codec
		if y.Default != nil {
			var err error
			if def, err = build(name+"/default", "default", spec, y.Default); err != nil {
				return nil, err
			}
		}
		s, err := NewSelect(rules, def)
		if err != nil {
			return nil, spec.Errorf("rules", "%v", err)
		}
		return s, nil
	}
}
