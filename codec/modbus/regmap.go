package modbus

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec/internal/intern"
	"github.com/iotgw/gateway/codec/layout"
)

// Point is one named value in a register map.
type Point struct {
	// Name is the point name.
	Name string
	// Table is where the value lives (default HoldingRegisters).
	Table Table
	// Address is the first register (or coil) of the value.
	Address uint16
	// Type is the value's type in the registers (default Uint16 for
	// registers; bit tables are always Bool). 32- and 64-bit types span 2
	// and 4 registers; String spans Size/2 registers, rounded up.
	Type layout.Type
	// Order is the byte and word order of multi-register values (default
	// BigEndian, "abcd"; many devices use WordSwap, "cdab").
	Order layout.Order
	// Bit and Width select a bit field inside the register(s) (Type Bool
	// or Bits), bit 0 being the least significant bit of the register.
	Bit, Width int
	// Size is the byte length of a String.
	Size int
	// Scale and Bias convert raw to engineering units: raw*Scale + Bias.
	Scale, Bias float64
	// Unit is copied to the point.
	Unit string
}

type entry struct {
	Point
	field layout.Field // at offset 0 of the point's first register
	words int          // registers spanned; 1 for bits
}

// RegisterMap is a gateway.Codec that names the registers of a Modbus
// device. See the package documentation for the frame contract. It is
// immutable and safe for concurrent use.
type RegisterMap struct {
	points []entry
	byName map[string]int
	strs   *intern.Table
}

var _ gateway.Codec = (*RegisterMap)(nil)

// New checks and compiles a register map.
func New(points []Point) (*RegisterMap, error) {
	r := &RegisterMap{byName: make(map[string]int, len(points)), strs: intern.New(0)}
	for i, p := range points {
		e, err := compile(p)
		if err != nil {
			return nil, fmt.Errorf("modbus: %w", &PointError{Index: i, Name: p.Name, Err: err})
		}
		if _, dup := r.byName[p.Name]; dup {
			return nil, fmt.Errorf("modbus: %w", &PointError{Index: i, Key: "name", Err: fmt.Errorf("duplicate name %q", p.Name)})
		}
		r.byName[p.Name] = i
		r.points = append(r.points, e)
	}
	return r, nil
}

func compile(p Point) (entry, error) {
	if p.Table == 0 {
		p.Table = HoldingRegisters
	}
	if p.Table > InputRegisters {
		return entry{}, fmt.Errorf("unknown table %d", p.Table)
	}
	if p.Table.IsBits() {
		if p.Type != 0 && p.Type != layout.Bool {
			return entry{}, fmt.Errorf("a %s point is a bool, not %s", p.Table, p.Type)
		}
		if p.Scale != 0 || p.Bias != 0 || p.Bit != 0 || p.Width > 1 || p.Size != 0 {
			return entry{}, fmt.Errorf("a %s point takes no scale, bias, bit, width or size", p.Table)
		}
		p.Type = layout.Bool
		if p.Name == "" {
			return entry{}, fmt.Errorf("name is empty")
		}
		return entry{Point: p, words: 1}, nil
	}
	if p.Type == 0 {
		p.Type = layout.Uint16
	}
	f := layout.Field{Name: p.Name, Type: p.Type, Order: p.Order, Bit: p.Bit, Width: p.Width,
		Size: p.Size, Scale: p.Scale, Bias: p.Bias, Unit: p.Unit}
	switch p.Type {
	case layout.Int8, layout.Uint8:
		return entry{}, fmt.Errorf("registers are 16 bits: use int16/uint16 or a bits field")
	case layout.Bool, layout.Bits:
		if f.Size == 0 {
			f.Size = 2
			if f.Bit+max(f.Width, 1) > 16 {
				f.Size = 4
			}
			if f.Bit+max(f.Width, 1) > 32 {
				f.Size = 8
			}
		}
		if f.Size == 1 {
			return entry{}, fmt.Errorf("registers are 16 bits: size must be 2, 4 or 8")
		}
	}
	l, err := layout.New([]layout.Field{f}, 0)
	if err != nil {
		return entry{}, err
	}
	f = l.Fields()[0]
	words := (f.Size + 1) / 2
	if int(p.Address)+words > 1<<16 {
		return entry{}, fmt.Errorf("registers %d..%d run past the end of the table", p.Address, int(p.Address)+words-1)
	}
	return entry{Point: p, field: f, words: words}, nil
}

// Points returns the compiled points with defaults filled in.
func (r *RegisterMap) Points() []Point {
	out := make([]Point, len(r.points))
	for i := range r.points {
		out[i] = r.points[i].Point
	}
	return out
}

func fieldErr(name string, off int, err error, format string, args ...any) error {
	return &layout.FieldError{Codec: "modbus", Field: name, Offset: off, Err: fmt.Errorf("%w: "+format, append([]any{err}, args...)...)}
}

// Decode implements gateway.Codec. f.Topic names the block (see
// ParseBlock) and f.Payload holds its registers, two big-endian bytes each
// (or, for coils and discrete inputs, bits packed LSB first as in a Modbus
// response). It appends every point that lies wholly inside the block.
func (r *RegisterMap) Decode(f *gateway.Frame, dst *gateway.Message) error {
	blk, err := ParseBlock(f.Topic)
	if err != nil {
		return err
	}
	b := f.Payload
	var count int
	if blk.Table.IsBits() {
		count = 8 * len(b)
	} else {
		if len(b)%2 != 0 {
			return fieldErr("payload", len(b)-1, layout.ErrShortFrame, "%d bytes is not a whole number of registers", len(b))
		}
		count = len(b) / 2
	}
	start, end := int(blk.Start), int(blk.Start)+count
	n := len(dst.Points)
	for i := range r.points {
		e := &r.points[i]
		a := int(e.Address)
		if e.Table != blk.Table || a < start || a >= end {
			continue
		}
		if a+e.words > end {
			clear(dst.Points[n:])
			dst.Points = dst.Points[:n]
			return fieldErr(e.Name, (a-start)*2, layout.ErrShortFrame, "%s/%d..%d runs past block %s/%d of %d registers",
				e.Table, a, a+e.words-1, blk.Table, blk.Start, count)
		}
		var v gateway.Value
		switch {
		case e.Table.IsBits():
			k := a - start
			v = gateway.Bool(b[k/8]>>(k%8)&1 != 0)
		case e.Type == layout.String:
			s := b[(a-start)*2:][:e.Size]
			if z := bytes.IndexByte(s, 0); z >= 0 {
				s = s[:z]
			}
			v = gateway.String(r.strs.Bytes(s))
		default:
			v, _ = e.field.Get(b[(a-start)*2:]) // length checked above
		}
		dst.Points = append(dst.Points, gateway.Point{Name: e.Name, Value: v, Unit: e.Unit})
	}
	return nil
}

// Encode implements gateway.Codec for writes. m.Topic names the block to
// write (e.g. "hr/10"); every point of m must be in the map and in that
// table at or after the block start. Encode appends the registers (or
// packed coils) from the block start to the last register a point
// covers; every register in between must be covered by some point, so a
// write never clobbers a register with a guess. Bits of a register not
// covered by a bool/bits point are written as 0. A coil write covers whole
// bytes of 8 coils, since the payload carries no coil count.
func (r *RegisterMap) Encode(m *gateway.Message, dst []byte) ([]byte, error) {
	blk, err := ParseBlock(m.Topic)
	if err != nil {
		return dst, err
	}
	if !blk.Table.Writable() {
		return dst, fieldErr("topic", -1, gateway.ErrNotSupported, "table %s is read-only", blk.Table)
	}
	start := int(blk.Start)
	// First pass: the span and coverage (up to 64 registers tracked in a
	// bitmap; Modbus writes at most 123 registers or 1968 coils).
	var covered [32]uint64 // 2048 registers or coils
	span := 0
	for i := range m.Points {
		p := &m.Points[i]
		idx, ok := r.byName[p.Name]
		if !ok {
			return dst, fieldErr(p.Name, -1, layout.ErrUnknownField, "not in the register map")
		}
		e := &r.points[idx]
		if e.Table != blk.Table {
			return dst, fieldErr(p.Name, -1, layout.ErrType, "point is in %s, the write is to %s", e.Table, blk.Table)
		}
		a := int(e.Address) - start
		if a < 0 || a+e.words > len(covered)*64 {
			return dst, fieldErr(p.Name, -1, layout.ErrRange, "%s/%d is outside the write block starting at %s/%d", e.Table, e.Address, blk.Table, blk.Start)
		}
		for k := a; k < a+e.words; k++ {
			covered[k/64] |= 1 << (k % 64)
		}
		span = max(span, a+e.words)
	}
	if span == 0 {
		return dst, fieldErr("", -1, layout.ErrMissingField, "no point to write")
	}
	if blk.Table.IsBits() {
		// The payload carries no coil count: a write covers whole bytes.
		span = (span + 7) &^ 7
	}
	for k := 0; k < span; k++ {
		if covered[k/64]&(1<<(k%64)) == 0 {
			return dst, fieldErr(fmt.Sprintf("%s/%d", blk.Table, start+k), 2*k, layout.ErrMissingField, "register or coil inside the write span has no point")
		}
	}
	n := len(dst)
	size := 2 * span
	if blk.Table.IsBits() {
		size = (span + 7) / 8
	}
	dst = slices.Grow(dst, size)[:n+size]
	out := dst[n:]
	clear(out)
	for i := range m.Points {
		p := &m.Points[i]
		e := &r.points[r.byName[p.Name]]
		a := int(e.Address) - start
		if blk.Table.IsBits() {
			switch p.Value.Kind() {
			case gateway.KindBool, gateway.KindInt, gateway.KindUint:
				if p.Value.Uint() > 1 {
					return dst[:n], fieldErr(p.Name, a/8, layout.ErrRange, "%v is not 0 or 1", p.Value)
				}
				if p.Value.Uint() == 1 {
					out[a/8] |= 1 << (a % 8)
				}
			default:
				return dst[:n], fieldErr(p.Name, a/8, layout.ErrType, "want bool, got %s", p.Value.Kind())
			}
			continue
		}
		if err := e.field.Put(out[2*a:], p.Value); err != nil {
			if fe, ok := err.(*layout.FieldError); ok {
				return dst[:n], &layout.FieldError{Codec: "modbus", Field: fe.Field, Offset: 2 * a, Err: fe.Err}
			}
			return dst[:n], err
		}
	}
	return dst, nil
}
