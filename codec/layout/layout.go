package layout

import (
	"bytes"
	"fmt"
	"math"
	"slices"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec/internal/intern"
)

// Field is one value at a fixed position in a binary frame.
//
// Decoding yields raw*Scale + Bias as a float when Scale or Bias is set,
// and the raw value in its own kind (Int, Uint, Float, Bool, String)
// otherwise. Encoding inverts it: (v - Bias) / Scale, rounded to the
// nearest integer for integer types, with a range check.
type Field struct {
	// Name is the point name.
	Name string
	// Type is the wire type.
	Type Type
	// Offset is the position of the field's first byte in the frame.
	Offset int
	// Order is the byte order of multi-byte fields (default BigEndian).
	Order Order
	// Bit and Width place a Bits or Bool field inside its container:
	// Bit is the position of the least significant bit (0 is the lowest
	// bit of the container), Width the number of bits (Bool: 1, the
	// default; Bits: 1..64).
	Bit, Width int
	// Size is the byte length of a String field, or the container size of
	// a Bits/Bool field (1, 2, 4 or 8; default the smallest that holds
	// Bit+Width). The container is read in Order.
	Size int
	// Scale multiplies the raw value; 0 means unscaled (1).
	Scale float64
	// Bias is added after scaling (the offset of a linear sensor).
	Bias float64
	// Unit is copied to the point.
	Unit string
}

// end returns the byte just past the field.
func (f *Field) end() int { return f.Offset + f.Size }

// Layout is a compiled list of fields: a gateway.Codec for fixed binary
// frames. It is immutable and safe for concurrent use.
//
// Decode does not allocate for numeric fields. String fields are interned
// in a bounded table, so a string the device repeats (a model or serial
// number) costs nothing after its first frame.
type Layout struct {
	fields []Field
	byName map[string]int
	size   int
	strs   *intern.Table
}

var _ gateway.Codec = (*Layout)(nil)

// New checks and compiles fields. minSize, when larger than the end of the
// last field, is the frame length Encode writes and Decode requires.
func New(fields []Field, minSize int) (*Layout, error) {
	l := &Layout{byName: make(map[string]int, len(fields)), size: minSize}
	for i, f := range fields {
		if err := f.normalize(); err != nil {
			return nil, fmt.Errorf("layout: fields[%d] %q: %w", i, f.Name, err)
		}
		if _, dup := l.byName[f.Name]; dup {
			return nil, fmt.Errorf("layout: fields[%d]: duplicate name %q", i, f.Name)
		}
		l.byName[f.Name] = i
		l.fields = append(l.fields, f)
		if f.Type == String {
			l.strs = intern.New(0)
		}
		if e := f.end(); e > l.size {
			l.size = e
		}
	}
	return l, nil
}

// normalize fills defaults and rejects impossible fields.
func (f *Field) normalize() error {
	if f.Name == "" {
		return fmt.Errorf("name is empty")
	}
	if f.Offset < 0 {
		return fmt.Errorf("offset %d is negative", f.Offset)
	}
	if f.Order > ByteSwap {
		return fmt.Errorf("unknown byte order %d", f.Order)
	}
	if math.IsNaN(f.Scale) || math.IsInf(f.Scale, 0) || math.IsNaN(f.Bias) || math.IsInf(f.Bias, 0) {
		return fmt.Errorf("scale and bias must be finite")
	}
	scaled := f.Scale != 0 || f.Bias != 0
	switch f.Type {
	case Int8, Int16, Int32, Int64, Uint8, Uint16, Uint32, Uint64, Float32, Float64:
		if f.Size != 0 && f.Size != f.Type.Size() {
			return fmt.Errorf("size %d does not match %s", f.Size, f.Type)
		}
		f.Size = f.Type.Size()
		if f.Bit != 0 || f.Width != 0 {
			return fmt.Errorf("bit and width apply to bool and bits fields only")
		}
	case Bool, Bits:
		if f.Type == Bool {
			if f.Width == 0 {
				f.Width = 1
			}
			if f.Width != 1 {
				return fmt.Errorf("a bool is 1 bit wide")
			}
			if scaled {
				return fmt.Errorf("a bool cannot be scaled")
			}
		}
		if f.Width < 1 || f.Width > 64 || f.Bit < 0 {
			return fmt.Errorf("bit %d width %d: want bit >= 0 and width 1..64", f.Bit, f.Width)
		}
		need := f.Bit + f.Width
		if f.Size == 0 {
			for _, n := range []int{1, 2, 4, 8} {
				if need <= 8*n {
					f.Size = n
					break
				}
			}
		}
		switch f.Size {
		case 1, 2, 4, 8:
		default:
			return fmt.Errorf("bit field container of %d bytes: want 1, 2, 4 or 8", f.Size)
		}
		if need > 8*f.Size {
			return fmt.Errorf("bits %d..%d do not fit a %d-byte container", f.Bit, need-1, f.Size)
		}
	case String:
		if f.Size <= 0 {
			return fmt.Errorf("a string needs a size > 0")
		}
		if scaled {
			return fmt.Errorf("a string cannot be scaled")
		}
	default:
		return fmt.Errorf("unknown type %d", f.Type)
	}
	if f.Scale == 0 && f.Bias != 0 {
		f.Scale = 1
	}
	return nil
}

// Fields returns a copy of the compiled fields with defaults filled in.
func (l *Layout) Fields() []Field { return slices.Clone(l.fields) }

// Size is the frame length Encode writes and Decode requires.
func (l *Layout) Size() int { return l.size }

// Decode implements gateway.Codec: it appends one point per field.
func (l *Layout) Decode(f *gateway.Frame, dst *gateway.Message) error {
	b := f.Payload
	if len(b) < l.size {
		// Name the first field that does not fit.
		for i := range l.fields {
			if fd := &l.fields[i]; fd.end() > len(b) {
				return &FieldError{Codec: "layout", Field: fd.Name, Offset: fd.Offset,
					Err: fmt.Errorf("%w: need %d bytes, frame has %d", ErrShortFrame, fd.end(), len(b))}
			}
		}
		return &FieldError{Codec: "layout", Field: "", Offset: len(b),
			Err: fmt.Errorf("%w: need %d bytes, frame has %d", ErrShortFrame, l.size, len(b))}
	}
	pts := slices.Grow(dst.Points, len(l.fields))
	for i := range l.fields {
		fd := &l.fields[i]
		pts = append(pts, gateway.Point{Name: fd.Name, Value: fd.get(b, l.strs), Unit: fd.Unit})
	}
	dst.Points = pts
	return nil
}

// Get decodes the field from b, which must hold at least Offset+Size
// bytes (else ErrShortFrame). Strings are copied.
func (f *Field) Get(b []byte) (gateway.Value, error) {
	if f.end() > len(b) {
		return gateway.Value{}, &FieldError{Codec: "layout", Field: f.Name, Offset: f.Offset,
			Err: fmt.Errorf("%w: need %d bytes, have %d", ErrShortFrame, f.end(), len(b))}
	}
	return f.get(b, nil), nil
}

// get decodes a field whose bytes are known to be present.
func (f *Field) get(b []byte, strs *intern.Table) gateway.Value {
	p := b[f.Offset:]
	switch f.Type {
	case Int16:
		var r int64
		if f.Order == BigEndian || f.Order == WordSwap {
			r = int64(int16(uint16(p[0])<<8 | uint16(p[1])))
		} else {
			r = int64(int16(uint16(p[1])<<8 | uint16(p[0])))
		}
		return f.intValue(r)
	case Uint16:
		var r uint64
		if f.Order == BigEndian || f.Order == WordSwap {
			r = uint64(p[0])<<8 | uint64(p[1])
		} else {
			r = uint64(p[1])<<8 | uint64(p[0])
		}
		return f.uintValue(r)
	case Int8:
		return f.intValue(int64(int8(p[0])))
	case Uint8:
		return f.uintValue(uint64(p[0]))
	case Int32:
		return f.intValue(int64(int32(uint32(load(p, 4, f.Order)))))
	case Uint32:
		return f.uintValue(load(p, 4, f.Order))
	case Int64:
		return f.intValue(int64(load(p, 8, f.Order)))
	case Uint64:
		return f.uintValue(load(p, 8, f.Order))
	case Float32:
		return f.floatValue(float64(math.Float32frombits(uint32(load(p, 4, f.Order)))))
	case Float64:
		return f.floatValue(math.Float64frombits(load(p, 8, f.Order)))
	case Bool:
		return gateway.Bool(load(p, f.Size, f.Order)>>uint(f.Bit)&1 != 0)
	case Bits:
		x := load(p, f.Size, f.Order) >> uint(f.Bit)
		if f.Width < 64 {
			x &= 1<<uint(f.Width) - 1
		}
		return f.uintValue(x)
	case String:
		s := p[:f.Size]
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		if strs != nil {
			return gateway.String(strs.Bytes(s))
		}
		return gateway.String(string(s))
	}
	return gateway.Value{}
}

func (f *Field) intValue(r int64) gateway.Value {
	if f.Scale != 0 {
		return gateway.Float(float64(r)*f.Scale + f.Bias)
	}
	return gateway.Int(r)
}

func (f *Field) uintValue(r uint64) gateway.Value {
	if f.Scale != 0 {
		return gateway.Float(float64(r)*f.Scale + f.Bias)
	}
	return gateway.Uint(r)
}

func (f *Field) floatValue(r float64) gateway.Value {
	if f.Scale != 0 {
		return gateway.Float(r*f.Scale + f.Bias)
	}
	return gateway.Float(r)
}

// Encode implements gateway.Codec: it appends a frame of Size bytes with
// every field of the layout taken from the point of the same name. Bytes
// no field covers are zero. A point the layout does not know is an error
// (ErrUnknownField), as is a field with no point (ErrMissingField).
func (l *Layout) Encode(m *gateway.Message, dst []byte) ([]byte, error) {
	start := len(dst)
	dst = slices.Grow(dst, l.size)[:start+l.size]
	out := dst[start:]
	clear(out)
	if len(l.fields) <= maxTracked {
		// One pass over the points with the name index; a bitmap finds
		// fields without a point.
		var seen [maxTracked / 64]uint64
		for i := range m.Points {
			p := &m.Points[i]
			idx, ok := l.byName[p.Name]
			if !ok {
				return dst[:start], &FieldError{Codec: "layout", Field: p.Name, Offset: -1, Err: ErrUnknownField}
			}
			if err := l.fields[idx].put(out, p.Value); err != nil {
				return dst[:start], err
			}
			seen[idx/64] |= 1 << (idx % 64)
		}
		for i := range l.fields {
			if seen[i/64]&(1<<(i%64)) == 0 {
				fd := &l.fields[i]
				return dst[:start], &FieldError{Codec: "layout", Field: fd.Name, Offset: fd.Offset, Err: ErrMissingField}
			}
		}
		return dst, nil
	}
	for i := range m.Points {
		if _, ok := l.byName[m.Points[i].Name]; !ok {
			return dst[:start], &FieldError{Codec: "layout", Field: m.Points[i].Name, Offset: -1, Err: ErrUnknownField}
		}
	}
	for i := range l.fields {
		fd := &l.fields[i]
		p, ok := m.Point(fd.Name)
		if !ok {
			return dst[:start], &FieldError{Codec: "layout", Field: fd.Name, Offset: fd.Offset, Err: ErrMissingField}
		}
		if err := fd.put(out, p.Value); err != nil {
			return dst[:start], err
		}
	}
	return dst, nil
}

// maxTracked is the field count up to which Encode runs in one pass.
const maxTracked = 256

// Put encodes v into the field's bytes of b (which must be long enough),
// leaving the bits of b outside the field untouched.
func (f *Field) Put(b []byte, v gateway.Value) error {
	if f.end() > len(b) {
		return &FieldError{Codec: "layout", Field: f.Name, Offset: f.Offset,
			Err: fmt.Errorf("%w: need %d bytes, have %d", ErrShortFrame, f.end(), len(b))}
	}
	return f.put(b, v)
}

func (f *Field) fail(err error, format string, args ...any) error {
	return &FieldError{Codec: "layout", Field: f.Name, Offset: f.Offset, Err: fmt.Errorf("%w: "+format, append([]any{err}, args...)...)}
}

func (f *Field) put(b []byte, v gateway.Value) error {
	p := b[f.Offset:]
	switch f.Type {
	case String:
		k := v.Kind()
		if k != gateway.KindString && k != gateway.KindBytes {
			return f.fail(ErrType, "want string, got %s", k)
		}
		s := v.Str()
		if len(s) > f.Size {
			return f.fail(ErrRange, "%d bytes do not fit %d", len(s), f.Size)
		}
		n := copy(p[:f.Size], s)
		clear(p[n:f.Size])
		return nil
	case Float32, Float64:
		x, err := f.number(v)
		if err != nil {
			return err
		}
		if f.Scale != 0 {
			x = (x - f.Bias) / f.Scale
		}
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return f.fail(ErrRange, "%v is not finite", x)
		}
		if f.Type == Float64 {
			store(p, 8, f.Order, math.Float64bits(x))
			return nil
		}
		if math.Abs(x) > math.MaxFloat32 {
			return f.fail(ErrRange, "%v overflows float32", x)
		}
		store(p, 4, f.Order, uint64(math.Float32bits(float32(x))))
		return nil
	case Bool, Bits:
		var raw uint64
		if f.Type == Bool {
			switch v.Kind() {
			case gateway.KindBool, gateway.KindInt, gateway.KindUint:
				if v.Uint() > 1 {
					return f.fail(ErrRange, "%v is not 0 or 1", v)
				}
				raw = v.Uint()
			default:
				return f.fail(ErrType, "want bool, got %s", v.Kind())
			}
		} else {
			r, err := f.unsigned(v, f.Width)
			if err != nil {
				return err
			}
			raw = r
		}
		mask := uint64(math.MaxUint64)
		if f.Width < 64 {
			mask = 1<<uint(f.Width) - 1
		}
		c := load(p, f.Size, f.Order)
		c = c&^(mask<<uint(f.Bit)) | raw<<uint(f.Bit)
		store(p, f.Size, f.Order, c)
		return nil
	}
	n := f.Type.Size()
	var raw uint64
	switch f.Type {
	case Uint8, Uint16, Uint32, Uint64:
		r, err := f.unsigned(v, 8*n)
		if err != nil {
			return err
		}
		raw = r
	default:
		r, err := f.signed(v, 8*n)
		if err != nil {
			return err
		}
		raw = uint64(r)
	}
	store(p, n, f.Order, raw)
	return nil
}

// number returns v as a float for scaled or float fields.
func (f *Field) number(v gateway.Value) (float64, error) {
	switch v.Kind() {
	case gateway.KindInt, gateway.KindUint, gateway.KindFloat:
		return v.Float(), nil
	}
	return 0, f.fail(ErrType, "want a number, got %s", v.Kind())
}

// unsigned converts v to a raw unsigned value of the given bit width,
// undoing the scale.
func (f *Field) unsigned(v gateway.Value, width int) (uint64, error) {
	max := uint64(math.MaxUint64)
	if width < 64 {
		max = 1<<uint(width) - 1
	}
	if f.Scale == 0 {
		switch v.Kind() {
		case gateway.KindUint:
			if v.Uint() > max {
				return 0, f.fail(ErrRange, "%d overflows %d bits", v.Uint(), width)
			}
			return v.Uint(), nil
		case gateway.KindInt:
			if v.Int() < 0 || uint64(v.Int()) > max {
				return 0, f.fail(ErrRange, "%d overflows unsigned %d bits", v.Int(), width)
			}
			return uint64(v.Int()), nil
		}
	}
	x, err := f.raw(v)
	if err != nil {
		return 0, err
	}
	if x < 0 || x > float64(max) || x == float64(max) && width == 64 {
		return 0, f.fail(ErrRange, "%v overflows unsigned %d bits", x, width)
	}
	return uint64(x), nil
}

// signed converts v to a raw two's complement value of the given width.
func (f *Field) signed(v gateway.Value, width int) (int64, error) {
	min, max := int64(-1)<<uint(width-1), int64(1)<<uint(width-1)-1
	if width == 64 {
		min, max = math.MinInt64, math.MaxInt64
	}
	if f.Scale == 0 {
		switch v.Kind() {
		case gateway.KindInt:
			if v.Int() < min || v.Int() > max {
				return 0, f.fail(ErrRange, "%d overflows %s", v.Int(), f.Type)
			}
			return v.Int(), nil
		case gateway.KindUint:
			if v.Uint() > uint64(max) {
				return 0, f.fail(ErrRange, "%d overflows %s", v.Uint(), f.Type)
			}
			return int64(v.Uint()), nil
		}
	}
	x, err := f.raw(v)
	if err != nil {
		return 0, err
	}
	// float64(MaxInt64) rounds up to 2^63, which does not fit.
	if x < float64(min) || x >= -float64(min) {
		return 0, f.fail(ErrRange, "%v overflows %s", x, f.Type)
	}
	return int64(x), nil
}

// raw undoes the scale of a numeric value and rounds it to an integer.
func (f *Field) raw(v gateway.Value) (float64, error) {
	x, err := f.number(v)
	if err != nil {
		return 0, err
	}
	if f.Scale != 0 {
		x = (x - f.Bias) / f.Scale
	} else if v.Kind() == gateway.KindFloat && x != math.Trunc(x) && !math.IsNaN(x) && !math.IsInf(x, 0) {
		return 0, f.fail(ErrType, "%v is not an integer", x)
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, f.fail(ErrRange, "%v is not finite", x)
	}
	return math.Round(x), nil
}
