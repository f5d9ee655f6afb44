package main

import (
	"encoding/binary"
	"fmt"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec"
)

// The invented ACME frame: magic 0xAC, a channel count n, then n channels
// of 3 bytes each: channel id (u8) and reading (s16 big-endian, 1/100).
//
//	AC 02 | 01 08 FC | 02 FF 9C   ->  ch1 = 23.00, ch2 = -1.00
type acmeCodec struct{ names [256]string } // point names interned at build

var _ gateway.Codec = (*acmeCodec)(nil)

func newACME(name string, spec gateway.Section) (gateway.Codec, error) {
	var cfg struct {
		Prefix string `yaml:"prefix"` // point name prefix, default "ch"
	}
	cfg.Prefix = "ch"
	if err := spec.Decode(&cfg); err != nil {
		return nil, err
	}
	c := &acmeCodec{}
	for i := range c.names {
		c.names[i] = fmt.Sprintf("%s%d", cfg.Prefix, i)
	}
	return c, nil
}

func (c *acmeCodec) Decode(f *gateway.Frame, dst *gateway.Message) error {
	b := f.Payload
	if len(b) < 2 || b[0] != 0xAC {
		return &codec.FieldError{Codec: "acme", Field: "magic", Offset: 0, Err: codec.ErrSyntax}
	}
	if n := int(b[1]); len(b) < 2+3*n {
		return &codec.FieldError{Codec: "acme", Field: "channels", Offset: len(b), Err: codec.ErrShortFrame}
	}
	for p := b[2 : 2+3*int(b[1])]; len(p) >= 3; p = p[3:] {
		v := float64(int16(binary.BigEndian.Uint16(p[1:]))) / 100
		dst.AddPoint(c.names[p[0]], gateway.Float(v), "")
	}
	return nil
}

func (c *acmeCodec) Encode(m *gateway.Message, dst []byte) ([]byte, error) {
	return dst, fmt.Errorf("acme: encode: %w", gateway.ErrNotSupported)
}
