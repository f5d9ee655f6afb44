package codec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/iotgw/gateway"
)

// ErrNoCodec is returned (wrapped) by Select when no rule matches and
// there is no default.
var ErrNoCodec = errors.New("codec: no codec for this device and topic")

// Rule picks a codec for the frames (and messages) it matches. Every
// condition that is set must hold.
type Rule struct {
	// Name labels the rule in errors (default "rules[i]").
	Name string
	// Connector, when set, must equal the frame's connector.
	Connector string
	// Device matches the device name: "" matches every device, "meter-7"
	// only that device, and a final '*' matches any rest ("th-*").
	Device string
	// Topic is an MQTT-style filter on the frame topic.
	Topic string
	// Codec decodes and encodes what the rule matches.
	Codec gateway.Codec
}

// Select is a gateway.Codec that dispatches to other codecs by device and
// topic: the first matching rule wins, else the default. Use it when one
// connector carries devices or topics that speak different formats (a
// Modbus poller reading blocks of two device models, an MQTT listener
// whose devices send JSON on one topic and packed binary on another).
// Matching does not allocate. Select is immutable and safe for concurrent
// use.
type Select struct {
	rules []Rule
	def   gateway.Codec
}

var _ gateway.Codec = (*Select)(nil)

// NewSelect checks the rules' filters. def may be nil: unmatched frames
// then fail with ErrNoCodec.
func NewSelect(rules []Rule, def gateway.Codec) (*Select, error) {
	s := &Select{def: def}
	for i, r := range rules {
		if r.Name == "" {
			r.Name = fmt.Sprintf("rules[%d]", i)
		}
		if r.Codec == nil {
			return nil, fmt.Errorf("codec: select %s: no codec", r.Name)
		}
		if i := strings.IndexByte(r.Device, '*'); i >= 0 && i != len(r.Device)-1 {
			return nil, fmt.Errorf("codec: select %s: device %q: '*' may only end the pattern", r.Name, r.Device)
		}
		if err := gateway.ValidateTopicFilter(r.Topic); err != nil {
			return nil, fmt.Errorf("codec: select %s: topic: %w", r.Name, err)
		}
		s.rules = append(s.rules, r)
	}
	return s, nil
}

func (s *Select) pick(connector, device, topic string) (gateway.Codec, error) {
	for i := range s.rules {
		r := &s.rules[i]
		if (r.Connector == "" || r.Connector == connector) && matchDevice(r.Device, device) && gateway.MatchTopic(r.Topic, topic) {
			return r.Codec, nil
		}
	}
	if s.def != nil {
		return s.def, nil
	}
	return nil, fmt.Errorf("device %q topic %q: %w", device, topic, ErrNoCodec)
}

// Decode implements gateway.Codec.
func (s *Select) Decode(f *gateway.Frame, dst *gateway.Message) error {
	c, err := s.pick(f.Connector, f.Device, f.Topic)
	if err != nil {
		return err
	}
	return c.Decode(f, dst)
}

// Encode implements gateway.Codec, matching m's connector, device and
// topic.
func (s *Select) Encode(m *gateway.Message, dst []byte) ([]byte, error) {
	c, err := s.pick(m.Connector, m.Device, m.Topic)
	if err != nil {
		return dst, err
	}
	return c.Encode(m, dst)
}

// matchDevice matches an exact name, "" (any) or a prefix ending in '*'.
func matchDevice(pattern, device string) bool {
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(device, p)
	}
	return pattern == "" || pattern == device
}
