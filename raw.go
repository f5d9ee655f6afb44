package gateway

import "fmt"

// RawCodec passes device bytes through: Decode yields one bytes point named
// "raw"; Encode writes the "raw" point (bytes or string) back out. It is
// registered under the name "raw" in every gateway.
type RawCodec struct{}

var _ Codec = RawCodec{}

// Decode implements Codec. It copies the payload, so it allocates once per
// frame.
func (RawCodec) Decode(f *Frame, dst *Message) error {
	dst.AddPoint("raw", Bytes(f.Payload), "")
	return nil
}

// Encode implements Codec.
func (RawCodec) Encode(m *Message, dst []byte) ([]byte, error) {
	p, ok := m.Point("raw")
	if !ok {
		return dst, fmt.Errorf("raw codec: encode: no point named \"raw\"")
	}
	switch p.Value.Kind() {
	case KindBytes, KindString:
		return append(dst, p.Value.Str()...), nil
	}
	return dst, fmt.Errorf("raw codec: encode: point \"raw\" is %s, want bytes or string", p.Value.Kind())
}
