package mapping

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/iotgw/gateway"
	"github.com/iotgw/gateway/codec/layout"
	"github.com/iotgw/gateway/codec/modbus"
)

// Limits that keep evaluation allocation-free and bounded.
const (
	// MaxStatements bounds the lines of one mapping.
	MaxStatements = 1024
	// MaxWriteSpan bounds the registers (or coils) one Encode may cover.
	MaxWriteSpan = 2048
)

type upPoint struct {
	name, unit string
	code       []instr
	t          typ
	hasReg     bool
	table      modbus.Table
	lo, hi     int
}

type downStmt struct {
	tg    target
	code  []instr
	names []int32
}

// Mapping is a compiled mapping: a gateway.Codec whose Decode evaluates
// the uplink lines over a register block and whose Encode evaluates the
// downlink lines into a register write. It is immutable and safe for
// concurrent use; evaluation does not allocate.
type Mapping struct {
	up    []upPoint
	down  []downStmt
	names []string
	known map[string]bool
	regs  bool // some uplink line reads registers
}

var _ gateway.Codec = (*Mapping)(nil)

// Compile parses and type-checks src. The error, if any, joins one *Error
// per problem found, each with its line and column.
func Compile(src string) (*Mapping, error) {
	toks, errs := lex(src)
	p := parse(toks)
	errs = append(errs, p.errs...)
	m := &Mapping{known: map[string]bool{}}
	if len(p.up)+len(p.down) > MaxStatements {
		errs = append(errs, &Error{Line: 1, Col: 1, Msg: fmt.Sprintf("more than %d statements", MaxStatements), Err: ErrSyntax})
	}
	if len(errs) == 0 && len(p.up)+len(p.down) == 0 {
		errs = append(errs, &Error{Line: 1, Col: 1, Msg: "empty mapping: write uplink lines like `t: s16(hr[0]) * 0.1` or downlink lines like `hr[1] = round(t * 10)`", Err: ErrSyntax})
	}
	upType := map[string]typ{}
	for _, st := range p.up {
		if _, dup := upType[st.name]; dup {
			errs = append(errs, &Error{Line: st.line, Col: st.col, Msg: fmt.Sprintf("point %q defined twice", st.name), Err: ErrType})
			continue
		}
		g := &gen{errs: &errs, names: &m.names, nameType: func(n string) (typ, bool) { t, ok := upType[n]; return t, ok }}
		t := g.expr(st.expr)
		if t == 0 {
			upType[st.name] = tyFloat // keep checking later lines
			continue
		}
		if g.maxDepth > maxStack {
			errs = append(errs, &Error{Line: st.line, Col: st.col, Msg: fmt.Sprintf("expression needs a stack deeper than %d", maxStack), Err: ErrSyntax})
		}
		upType[st.name] = t
		m.known[st.name] = true
		m.up = append(m.up, upPoint{name: st.name, unit: st.unit, code: g.code, t: t,
			hasReg: g.hasReg, table: g.table, lo: g.lo, hi: g.hi})
		m.regs = m.regs || g.hasReg
	}
	written := map[[2]int]int{} // table, address -> line
	for _, st := range p.down {
		tg, ok := compileTarget(st.target, &errs)
		g := &gen{errs: &errs, names: &m.names, downlink: true, nameType: func(n string) (typ, bool) {
			if t, ok := upType[n]; ok {
				return t, true
			}
			return tyFloat, true
		}}
		t := g.expr(st.expr)
		if !ok || t == 0 {
			continue
		}
		tg.text = targetText(st.target)
		switch {
		case tg.t == tyFloat && t == tyInt:
			g.emit(opI2F, 0, 0, 0, 0)
		case tg.t != t:
			hint := ""
			if tg.t == tyInt && t == tyFloat {
				hint = ": use round(), floor(), ceil() or trunc()"
			}
			errs = append(errs, &Error{Line: st.eline, Col: st.ecol, Msg: fmt.Sprintf("%s takes %s, the expression is %s%s", tg.text, tg.t, t, hint), Err: ErrType})
			continue
		}
		if g.maxDepth > maxStack {
			errs = append(errs, &Error{Line: st.line, Col: st.col, Msg: fmt.Sprintf("expression needs a stack deeper than %d", maxStack), Err: ErrSyntax})
		}
		clash := false
		for _, a := range tg.addrs[:tg.words] {
			key := [2]int{int(tg.table), a}
			if line, dup := written[key]; dup && !clash {
				errs = append(errs, &Error{Line: st.line, Col: st.col, Msg: fmt.Sprintf("%s[%d] is already written on line %d", tg.table, a, line), Err: ErrType})
				clash = true
			}
			written[key] = st.line
		}
		for _, idx := range g.usedNames {
			m.known[m.names[idx]] = true
		}
		m.down = append(m.down, downStmt{tg: tg, code: g.code, names: g.usedNames})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

func targetText(n *node) string {
	ref := func(r *node) string { return r.table.String() + "[" + strconv.Itoa(r.addr) + "]" }
	if n.kind == nRef {
		return ref(n)
	}
	parts := make([]string, len(n.args))
	for i, a := range n.args {
		parts[i] = ref(a)
	}
	return n.op + "(" + strings.Join(parts, ", ") + ")"
}

// Points returns the names of the uplink points in order.
func (m *Mapping) Points() []string {
	out := make([]string, len(m.up))
	for i := range m.up {
		out[i] = m.up[i].name
	}
	return out
}

type status uint8

const (
	stOK status = iota
	stAbsent
	stDivZero
	stNotFinite
	stOverflow
	stType
)

var statusErr = [...]struct {
	err error
	msg string
}{
	stDivZero:   {layout.ErrRange, "integer division by zero"},
	stNotFinite: {layout.ErrRange, "NaN or infinity where an integer is needed"},
	stOverflow:  {layout.ErrRange, "integer overflow or negative shift"},
	stType:      {layout.ErrType, "a point used in the expression is not a number of the expected kind"},
}

type env struct {
	regs  []byte
	start int
	pts   []gateway.Point
}

func (e *env) reg(a int) uint64 {
	o := 2 * (a - e.start)
	return uint64(e.regs[o])<<8 | uint64(e.regs[o+1])
}

// run evaluates code on a fixed-size stack; it does not allocate.
func (m *Mapping) run(code []instr, e *env) (uint64, status) {
	var st [maxStack]uint64
	sp := 0
	for pc := 0; pc < len(code); pc++ {
		in := &code[pc]
		switch in.op {
		case opConst:
			st[sp] = in.k
			sp++
		case opReg:
			st[sp] = e.reg(int(in.a))
			sp++
		case opRegS16:
			st[sp] = uint64(int64(int16(e.reg(int(in.a)))))
			sp++
		case opRegWide:
			var raw uint64
			for i := 0; i < int(in.a); i++ {
				raw = raw<<16 | e.reg(int(in.k>>(16*uint(i))&0xffff))
			}
			switch conv(in.b) {
			case cvS32:
				raw = uint64(int64(int32(uint32(raw))))
			case cvF32:
				raw = math.Float64bits(float64(math.Float32frombits(uint32(raw))))
			}
			st[sp] = raw
			sp++
		case opBit:
			k := int(in.a) - e.start
			st[sp] = uint64(e.regs[k/8] >> (k % 8) & 1)
			sp++
		case opName:
			v, s := lookup(e.pts, m.names[in.a], typ(in.b))
			if s != stOK {
				return 0, s
			}
			st[sp] = v
			sp++
		case opI2F:
			st[sp-1] = math.Float64bits(float64(int64(st[sp-1])))
		case opNegI:
			st[sp-1] = -st[sp-1]
		case opNegF:
			st[sp-1] ^= 1 << 63
		case opNot:
			st[sp-1] ^= 1
		case opJmpFalse:
			sp--
			if st[sp] == 0 {
				pc += int(in.a) - 1
			}
		case opJmp:
			pc += int(in.a) - 1
		case opRound, opFloor, opCeil, opTrunc:
			f := math.Float64frombits(st[sp-1])
			switch in.op {
			case opRound:
				f = math.Round(f)
			case opFloor:
				f = math.Floor(f)
			case opCeil:
				f = math.Ceil(f)
			default:
				f = math.Trunc(f)
			}
			if math.IsNaN(f) || math.IsInf(f, 0) {
				return 0, stNotFinite
			}
			if f < -(1<<63) || f >= 1<<63 {
				return 0, stOverflow
			}
			st[sp-1] = uint64(int64(f))
		case opAbsI:
			if int64(st[sp-1]) < 0 {
				st[sp-1] = -st[sp-1]
			}
		case opAbsF:
			st[sp-1] &^= 1 << 63
		default:
			sp--
			a, b := st[sp-1], st[sp]
			r, s := binop(in.op, a, b)
			if s != stOK {
				return 0, s
			}
			st[sp-1] = r
		}
	}
	return st[0], stOK
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func binop(op opcode, a, b uint64) (uint64, status) {
	ia, ib := int64(a), int64(b)
	fa, fb := math.Float64frombits(a), math.Float64frombits(b)
	switch op {
	case opAddI:
		return a + b, stOK
	case opAddF:
		return math.Float64bits(fa + fb), stOK
	case opSubI:
		return a - b, stOK
	case opSubF:
		return math.Float64bits(fa - fb), stOK
	case opMulI:
		return uint64(ia * ib), stOK
	case opMulF:
		return math.Float64bits(fa * fb), stOK
	case opDivF:
		return math.Float64bits(fa / fb), stOK
	case opModI:
		if ib == 0 {
			return 0, stDivZero
		}
		return uint64(ia % ib), stOK
	case opAndI:
		return a & b, stOK
	case opOrI:
		return a | b, stOK
	case opXorI:
		return a ^ b, stOK
	case opShlI, opShrI:
		if ib < 0 {
			return 0, stOverflow
		}
		if op == opShlI {
			return uint64(ia << uint64(ib)), stOK
		}
		return uint64(ia >> uint64(ib)), stOK
	case opEqI:
		return b2u(a == b), stOK
	case opEqF:
		return b2u(fa == fb), stOK
	case opNeI:
		return b2u(a != b), stOK
	case opNeF:
		return b2u(fa != fb), stOK
	case opLtI:
		return b2u(ia < ib), stOK
	case opLtF:
		return b2u(fa < fb), stOK
	case opLeI:
		return b2u(ia <= ib), stOK
	case opLeF:
		return b2u(fa <= fb), stOK
	case opGtI:
		return b2u(ia > ib), stOK
	case opGtF:
		return b2u(fa > fb), stOK
	case opGeI:
		return b2u(ia >= ib), stOK
	case opGeF:
		return b2u(fa >= fb), stOK
	case opMinI:
		return uint64(min(ia, ib)), stOK
	case opMinF:
		return math.Float64bits(math.Min(fa, fb)), stOK
	case opMaxI:
		return uint64(max(ia, ib)), stOK
	case opMaxF:
		return math.Float64bits(math.Max(fa, fb)), stOK
	case opBitTest:
		if ib < 0 || ib > 63 {
			return 0, stOverflow
		}
		return a >> uint64(ib) & 1, stOK
	}
	return 0, stType
}

// lookup finds a point and converts it to the static type t.
func lookup(pts []gateway.Point, name string, t typ) (uint64, status) {
	for i := range pts {
		if pts[i].Name != name {
			continue
		}
		v := pts[i].Value
		k := v.Kind()
		switch t {
		case tyFloat:
			if k == gateway.KindInt || k == gateway.KindUint || k == gateway.KindFloat {
				return math.Float64bits(v.Float()), stOK
			}
		case tyInt:
			switch k {
			case gateway.KindInt:
				return uint64(v.Int()), stOK
			case gateway.KindUint:
				return v.Uint(), stOK // u64 registers: same bits
			case gateway.KindFloat:
				f := v.Float()
				if f == math.Trunc(f) && f >= -(1<<63) && f < 1<<63 {
					return uint64(int64(f)), stOK
				}
			}
		case tyBool:
			if k == gateway.KindBool || (k == gateway.KindInt || k == gateway.KindUint) && v.Uint() <= 1 {
				return v.Uint(), stOK
			}
		}
		return 0, stType
	}
	return 0, stAbsent
}

func value(bits uint64, t typ) gateway.Value {
	switch t {
	case tyInt:
		return gateway.Int(int64(bits))
	case tyBool:
		return gateway.Bool(bits != 0)
	}
	return gateway.Float(math.Float64frombits(bits))
}

func fail(field string, off int, err error, format string, args ...any) error {
	return &layout.FieldError{Codec: "mapping", Field: field, Offset: off, Err: fmt.Errorf("%w: "+format, append([]any{err}, args...)...)}
}

// Decode implements gateway.Codec: f.Topic names the Modbus block and
// f.Payload holds it (see package codec/modbus for the contract). Each
// uplink line whose registers all lie in the block yields a point; lines
// that read no registers yield theirs on every frame; a line that uses a
// point missing from this frame is skipped.
func (m *Mapping) Decode(f *gateway.Frame, dst *gateway.Message) error {
	e := env{regs: f.Payload}
	var blk modbus.Block
	end := 0
	if m.regs {
		var err error
		if blk, err = modbus.ParseBlock(f.Topic); err != nil {
			return err
		}
		e.start = int(blk.Start)
		if blk.Table.IsBits() {
			end = e.start + 8*len(f.Payload)
		} else {
			if len(f.Payload)%2 != 0 {
				return fail("payload", len(f.Payload)-1, layout.ErrShortFrame, "%d bytes is not a whole number of registers", len(f.Payload))
			}
			end = e.start + len(f.Payload)/2
		}
	}
	base := len(dst.Points)
	dst.Points = slices.Grow(dst.Points, len(m.up))
	for i := range m.up {
		u := &m.up[i]
		if u.hasReg && (u.table != blk.Table || u.lo < e.start || u.hi >= end) {
			continue
		}
		e.pts = dst.Points[base:]
		bits, s := m.run(u.code, &e)
		switch s {
		case stOK:
		case stAbsent:
			continue
		default:
			clear(dst.Points[base:])
			dst.Points = dst.Points[:base]
			off := -1
			if u.hasReg {
				off = 2 * (u.lo - e.start)
				if u.table.IsBits() {
					off = (u.lo - e.start) / 8
				}
			}
			return fail(u.name, off, statusErr[s].err, "%s", statusErr[s].msg)
		}
		dst.Points = append(dst.Points, gateway.Point{Name: u.name, Value: value(bits, u.t), Unit: u.unit})
	}
	return nil
}

// Encode implements gateway.Codec for writes: m.Topic names the block to
// write ("hr/10" or "coil/0"), and the result is its payload in the
// codec/modbus contract. Every downlink line whose target lies in that
// block (table and addresses at or after the start) and whose points are
// all present in m is evaluated. The registers from the block start to the
// last one written must all be written (a coil write covers whole bytes).
// A point of m that no line of the mapping names is an error
// (ErrUnknownField); uplink-only points are ignored.
func (m *Mapping) Encode(msg *gateway.Message, dst []byte) ([]byte, error) {
	for i := range msg.Points {
		if !m.known[msg.Points[i].Name] {
			return dst, fail(msg.Points[i].Name, -1, layout.ErrUnknownField, "no line of the mapping names it")
		}
	}
	blk, err := modbus.ParseBlock(msg.Topic)
	if err != nil {
		return dst, err
	}
	if !blk.Table.Writable() {
		return dst, fail("topic", -1, gateway.ErrNotSupported, "table %s is read-only", blk.Table)
	}
	start := int(blk.Start)
	var apply [MaxStatements / 64]uint64
	var covered [MaxWriteSpan / 64]uint64
	span := 0
	for i := range m.down {
		d := &m.down[i]
		if d.tg.table != blk.Table || d.tg.lo < start {
			continue
		}
		present := true
		for _, n := range d.names {
			if _, ok := msg.Point(m.names[n]); !ok {
				present = false
				break
			}
		}
		if !present {
			continue
		}
		if d.tg.hi-start >= MaxWriteSpan {
			return dst, fail(d.tg.text, -1, layout.ErrRange, "more than %d registers from the block start %s", MaxWriteSpan, msg.Topic)
		}
		apply[i/64] |= 1 << (i % 64)
		for _, a := range d.tg.addrs[:d.tg.words] {
			k := a - start
			covered[k/64] |= 1 << (k % 64)
		}
		span = max(span, d.tg.hi-start+1)
	}
	if span == 0 {
		return dst, fail("", -1, layout.ErrMissingField, "no downlink line writes %s with the points given", msg.Topic)
	}
	bits := blk.Table.IsBits()
	if bits {
		span = (span + 7) &^ 7
		if span > MaxWriteSpan {
			span = MaxWriteSpan
		}
	}
	for k := 0; k < span; k++ {
		if covered[k/64]&(1<<(k%64)) == 0 {
			off := 2 * k
			if bits {
				off = k / 8
			}
			return dst, fail(blk.Table.String()+"["+strconv.Itoa(start+k)+"]", off, layout.ErrMissingField, "inside the write span but no line writes it")
		}
	}
	n := len(dst)
	size := 2 * span
	if bits {
		size = span / 8
	}
	dst = slices.Grow(dst, size)[:n+size]
	out := dst[n:]
	clear(out)
	e := env{pts: msg.Points}
	for i := range m.down {
		if apply[i/64]&(1<<(i%64)) == 0 {
			continue
		}
		d := &m.down[i]
		v, s := m.run(d.code, &e)
		off := 2 * (d.tg.lo - start)
		if bits {
			off = (d.tg.lo - start) / 8
		}
		if s != stOK {
			return dst[:n], fail(d.tg.text, off, statusErr[s].err, "%s", statusErr[s].msg)
		}
		if err := d.tg.write(out, start, v); err != nil {
			return dst[:n], fail(d.tg.text, off, layout.ErrRange, "%v", err)
		}
	}
	return dst, nil
}

var errNotFinite = errors.New("NaN or infinity")

// write stores v into the target's registers of out (block at start).
func (tg *target) write(out []byte, start int, v uint64) error {
	if tg.conv == 0 { // coil
		k := tg.addrs[0] - start
		out[k/8] |= byte(v&1) << (k % 8)
		return nil
	}
	i := int64(v)
	f := math.Float64frombits(v)
	raw := v
	switch tg.conv {
	case cvU16:
		if i < 0 || i > math.MaxUint16 {
			return fmt.Errorf("%d does not fit u16", i)
		}
	case cvS16:
		if i < math.MinInt16 || i > math.MaxInt16 {
			return fmt.Errorf("%d does not fit s16", i)
		}
	case cvU32:
		if i < 0 || i > math.MaxUint32 {
			return fmt.Errorf("%d does not fit u32", i)
		}
	case cvS32:
		if i < math.MinInt32 || i > math.MaxInt32 {
			return fmt.Errorf("%d does not fit s32", i)
		}
	case cvF32:
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return errNotFinite
		}
		if math.Abs(f) > math.MaxFloat32 {
			return fmt.Errorf("%v overflows f32", f)
		}
		raw = uint64(math.Float32bits(float32(f)))
	case cvF64:
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return errNotFinite
		}
	}
	for w := 0; w < tg.words; w++ {
		word := raw >> (16 * uint(tg.words-1-w))
		o := 2 * (tg.addrs[w] - start)
		out[o], out[o+1] = byte(word>>8), byte(word)
	}
	return nil
}
