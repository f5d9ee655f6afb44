// Package codec holds the reference codecs of the gateway's conversion
// plane and wires them into YAML configuration.
//
// The happy path:
//
//	reg := gateway.NewRegistry()
//	err := codec.Register(reg)                      // json, layout, modbus, mapping, raw, select
//	g, err := gateway.New(gateway.WithRegistry(reg), gateway.WithConfigFile("gw.yaml", true))
//
// The codecs:
//
//   - JSON (this package): objects of points and arrays of point objects,
//     decoded by a hand-written scanner with interned names: no
//     reflection, no allocation in steady state.
//   - layout (codec/layout): fixed binary frames described field by field:
//     int8..int64, uint8..uint64, float32/64, bool and bit fields, fixed
//     strings; big, little and the word-swapped Modbus byte orders; scale
//     and bias.
//   - modbus (codec/modbus): a register map over the register blocks a
//     Modbus poller reads; its package documentation is the frame contract
//     for pollers (Topic "hr/0", Payload the big-endian registers).
//   - mapping (codec/mapping): a small language that maps registers to
//     points and points back to registers, e.g.
//     `temperature: s16(hr[0]) * 0.1 unit "C"` and
//     `s16(hr[0]) = round(temperature * 10)`.
//   - raw: gateway.RawCodec, registered under "raw".
//   - Select (this package): picks one of the above per connector, device
//     and topic (MQTT-style filters).
//
// A host adds its own kinds with Register(reg, codec.Kind{Name: "acme",
// Factory: ...}); they can then also be nested in select rules. Errors
// from decoding and encoding are *FieldError values naming the field and
// byte offset, wrapping ErrShortFrame, ErrType, ErrRange, ErrUnknownField,
// ErrMissingField or ErrSyntax.
package codec
