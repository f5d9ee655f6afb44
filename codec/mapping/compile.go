package mapping

import (
	"fmt"
	"math"

	"github.com/iotgw/gateway/codec/layout"
	"github.com/iotgw/gateway/codec/modbus"
)

// typ is the static type of an expression.
type typ uint8

const (
	tyInt typ = iota + 1
	tyFloat
	tyBool
)

func (t typ) String() string {
	switch t {
	case tyInt:
		return "int"
	case tyFloat:
		return "float"
	case tyBool:
		return "bool"
	}
	return "?"
}

type opcode uint8

const (
	opConst   opcode = iota // push k
	opReg                   // push register a of the block as u16 (int)
	opRegS16                // push register a as s16
	opRegWide               // push words of k (a = count, b = conv)
	opBit                   // push coil/discrete input a (bool)
	opName                  // push point names[a] as type b; absent: skip
	opI2F
	opAddI
	opAddF
	opSubI
	opSubF
	opMulI
	opMulF
	opDivF
	opModI
	opNegI
	opNegF
	opNot
	opAndI
	opOrI
	opXorI
	opShlI
	opShrI
	opEqI
	opEqF
	opNeI
	opNeF
	opLtI
	opLtF
	opLeI
	opLeF
	opGtI
	opGtF
	opGeI
	opGeF
	opJmpFalse // pop; if false jump by a
	opJmp      // jump by a
	opRound
	opFloor
	opCeil
	opTrunc
	opAbsI
	opAbsF
	opMinI
	opMinF
	opMaxI
	opMaxF
	opBitTest
)

type instr struct {
	op   opcode
	a, b int32
	k    uint64
}

// conversion of a register group.
type conv uint8

const (
	cvU16 conv = iota + 1
	cvS16
	cvU32
	cvS32
	cvF32
	cvU64
	cvS64
	cvF64
)

var convs = map[string]struct {
	c     conv
	words int
	t     typ
}{
	"u16": {cvU16, 1, tyInt}, "s16": {cvS16, 1, tyInt},
	"u32": {cvU32, 2, tyInt}, "s32": {cvS32, 2, tyInt}, "f32": {cvF32, 2, tyFloat},
	"u64": {cvU64, 4, tyInt}, "s64": {cvS64, 4, tyInt}, "f64": {cvF64, 4, tyFloat},
}

// maxStack bounds the evaluation stack; deeper expressions do not compile.
const maxStack = 32

// gen compiles one expression into code.
type gen struct {
	code     []instr
	depth    int
	maxDepth int
	errs     *[]error
	names    *[]string
	nameType func(name string) (typ, bool)
	// registers read, for the block check
	table      modbus.Table
	lo, hi     int
	hasReg     bool
	downlink   bool
	usedNames  []int32
	mixedTable bool
}

func (g *gen) fail(n *node, err error, format string, args ...any) {
	*g.errs = append(*g.errs, &Error{Line: n.line, Col: n.col, Msg: fmt.Sprintf(format, args...), Err: err})
}

func (g *gen) emit(op opcode, a, b int32, k uint64, push int) {
	g.code = append(g.code, instr{op: op, a: a, b: b, k: k})
	g.depth += push
	g.maxDepth = max(g.maxDepth, g.depth)
}

func (g *gen) useReg(n *node) {
	if g.hasReg && g.table != n.table {
		if !g.mixedTable {
			g.fail(n, ErrType, "an expression reads one table; %s[%d] mixes %s into %s", n.table, n.addr, n.table, g.table)
		}
		g.mixedTable = true
		return
	}
	if !g.hasReg {
		g.table, g.lo, g.hi, g.hasReg = n.table, n.addr, n.addr, true
	}
	g.lo, g.hi = min(g.lo, n.addr), max(g.hi, n.addr)
}

// expr generates n and returns its type, 0 after an error.
func (g *gen) expr(n *node) typ {
	switch n.kind {
	case nInt:
		g.emit(opConst, 0, 0, uint64(n.ival), 1)
		return tyInt
	case nFloat:
		g.emit(opConst, 0, 0, math.Float64bits(n.fval), 1)
		return tyFloat
	case nBool:
		g.emit(opConst, 0, 0, uint64(n.ival), 1)
		return tyBool
	case nName:
		t, ok := g.nameType(n.name)
		if !ok {
			g.fail(n, ErrType, "unknown name %q (uplink expressions may use points defined on earlier lines)", n.name)
			return 0
		}
		idx := -1
		for i, s := range *g.names {
			if s == n.name {
				idx = i
			}
		}
		if idx < 0 {
			idx = len(*g.names)
			*g.names = append(*g.names, n.name)
		}
		g.usedNames = append(g.usedNames, int32(idx))
		g.emit(opName, int32(idx), int32(t), 0, 1)
		return t
	case nRef:
		if g.downlink {
			g.fail(n, ErrType, "downlink expressions compute from message points, not registers: %s[%d]", n.table, n.addr)
			return 0
		}
		g.useReg(n)
		if n.table.IsBits() {
			g.emit(opBit, int32(n.addr), 0, 0, 1)
			return tyBool
		}
		g.emit(opReg, int32(n.addr), 0, 0, 1)
		return tyInt
	case nUnary:
		t := g.expr(n.args[0])
		switch {
		case t == 0:
			return 0
		case n.op == "!" && t == tyBool:
			g.emit(opNot, 0, 0, 0, 0)
			return tyBool
		case n.op == "-" && t == tyInt:
			g.emit(opNegI, 0, 0, 0, 0)
			return tyInt
		case n.op == "-" && t == tyFloat:
			g.emit(opNegF, 0, 0, 0, 0)
			return tyFloat
		}
		g.fail(n, ErrType, "operator %s does not apply to %s", n.op, t)
		return 0
	case nBinary:
		return g.binary(n)
	case nCond:
		return g.cond(n.args[0], n.args[1], n.args[2], n)
	case nCall:
		return g.call(n)
	}
	g.fail(n, ErrSyntax, "unexpected expression")
	return 0
}

// cond compiles c ? a : b with jumps, promoting int/float branches.
func (g *gen) cond(c, a, b, at *node) typ {
	if tc := g.expr(c); tc != tyBool {
		if tc != 0 {
			g.fail(c, ErrType, "condition is %s, want bool", tc)
		}
		return 0
	}
	g.depth--
	outer, d := g.code, g.depth
	g.code = nil
	ta := g.expr(a)
	codeA := g.code
	g.code, g.depth = nil, d
	tb := g.expr(b)
	codeB := g.code
	g.code = outer
	if ta == 0 || tb == 0 {
		return 0
	}
	t := ta
	if ta != tb {
		if ta == tyBool || tb == tyBool {
			g.fail(at, ErrType, "branches are %s and %s", ta, tb)
			return 0
		}
		t = tyFloat
		if ta == tyInt {
			codeA = append(codeA, instr{op: opI2F})
		} else {
			codeB = append(codeB, instr{op: opI2F})
		}
	}
	g.code = append(g.code, instr{op: opJmpFalse, a: int32(len(codeA) + 2)})
	g.code = append(g.code, codeA...)
	g.code = append(g.code, instr{op: opJmp, a: int32(len(codeB) + 1)})
	g.code = append(g.code, codeB...)
	return t
}

// numeric compiles two operands, promoting to float when either is.
func (g *gen) numeric(n *node) (typ, bool) { return g.numericAs(n, false) }

// numericAs is numeric; toFloat promotes int operands too.
func (g *gen) numericAs(n *node, toFloat bool) (typ, bool) {
	ta := g.expr(n.args[0])
	pa := len(g.code)
	tb := g.expr(n.args[1])
	if ta == 0 || tb == 0 {
		return 0, false
	}
	if ta == tyBool || tb == tyBool {
		g.fail(n, ErrType, "operator %s wants numbers, got %s and %s", n.op, ta, tb)
		return 0, false
	}
	if ta == tb && !(toFloat && ta == tyInt) {
		return ta, true
	}
	if ta == tyInt && tb == tyInt {
		g.code = append(g.code[:pa+1], g.code[pa:]...)
		g.code[pa] = instr{op: opI2F}
		g.emit(opI2F, 0, 0, 0, 0)
		return tyFloat, true
	}
	if ta == tyInt {
		g.code = append(g.code[:pa+1], g.code[pa:]...)
		g.code[pa] = instr{op: opI2F}
	} else {
		g.emit(opI2F, 0, 0, 0, 0)
	}
	return tyFloat, true
}

func (g *gen) binary(n *node) typ {
	switch n.op {
	case "&&": // a ? b : false
		return g.cond(n.args[0], n.args[1], &node{kind: nBool, line: n.line, col: n.col}, n)
	case "||": // a ? true : b
		return g.cond(n.args[0], &node{kind: nBool, ival: 1, line: n.line, col: n.col}, n.args[1], n)
	case "==", "!=":
		ta := g.expr(n.args[0])
		pa := len(g.code)
		tb := g.expr(n.args[1])
		if ta == 0 || tb == 0 {
			return 0
		}
		op := map[string]opcode{"==": opEqI, "!=": opNeI}[n.op]
		switch {
		case ta == tb && ta != tyFloat:
		case ta == tyBool || tb == tyBool:
			g.fail(n, ErrType, "cannot compare %s with %s", ta, tb)
			return 0
		default:
			if ta == tyInt {
				g.code = append(g.code[:pa+1], g.code[pa:]...)
				g.code[pa] = instr{op: opI2F}
			} else if tb == tyInt {
				g.emit(opI2F, 0, 0, 0, 0)
			}
			op++ // the F variant follows the I variant
		}
		g.emit(op, 0, 0, 0, -1)
		return tyBool
	}
	t, ok := g.numericAs(n, n.op == "/")
	if !ok {
		return 0
	}
	type pair struct{ i, f opcode }
	arith := map[string]pair{"+": {opAddI, opAddF}, "-": {opSubI, opSubF}, "*": {opMulI, opMulF},
		"<": {opLtI, opLtF}, "<=": {opLeI, opLeF}, ">": {opGtI, opGtF}, ">=": {opGeI, opGeF}}
	if p, ok := arith[n.op]; ok {
		op := p.i
		if t == tyFloat {
			op = p.f
		}
		g.emit(op, 0, 0, 0, -1)
		switch n.op {
		case "<", "<=", ">", ">=":
			return tyBool
		}
		return t
	}
	if n.op == "/" {
		g.emit(opDivF, 0, 0, 0, -1)
		return tyFloat
	}
	ints := map[string]opcode{"%": opModI, "&": opAndI, "|": opOrI, "^": opXorI, "<<": opShlI, ">>": opShrI}
	if op, ok := ints[n.op]; ok {
		if t != tyInt {
			g.fail(n, ErrType, "operator %s wants ints, got float (use round, floor, ceil or trunc)", n.op)
			return 0
		}
		g.emit(op, 0, 0, 0, -1)
		return tyInt
	}
	g.fail(n, ErrSyntax, "unknown operator %s", n.op)
	return 0
}

func (g *gen) call(n *node) typ {
	if cv, ok := convs[n.op]; ok {
		return g.wide(n, cv.c, cv.words, cv.t)
	}
	want := map[string]int{"round": 1, "floor": 1, "ceil": 1, "trunc": 1, "int": 1, "float": 1, "abs": 1, "min": 2, "max": 2, "clamp": 3, "bit": 2}
	nargs, ok := want[n.op]
	if !ok {
		g.fail(n, ErrType, "unknown function %s", n.op)
		return 0
	}
	if len(n.args) != nargs {
		g.fail(n, ErrType, "%s takes %d argument(s), got %d", n.op, nargs, len(n.args))
		return 0
	}
	switch n.op {
	case "round", "floor", "ceil", "trunc", "int", "float", "abs":
		t := g.expr(n.args[0])
		if t == 0 {
			return 0
		}
		if t == tyBool {
			g.fail(n, ErrType, "%s wants a number, got bool", n.op)
			return 0
		}
		switch n.op {
		case "float":
			if t == tyInt {
				g.emit(opI2F, 0, 0, 0, 0)
			}
			return tyFloat
		case "abs":
			if t == tyInt {
				g.emit(opAbsI, 0, 0, 0, 0)
			} else {
				g.emit(opAbsF, 0, 0, 0, 0)
			}
			return t
		}
		if t == tyInt {
			return tyInt // already whole
		}
		op := map[string]opcode{"round": opRound, "floor": opFloor, "ceil": opCeil, "trunc": opTrunc, "int": opTrunc}[n.op]
		g.emit(op, 0, 0, 0, 0)
		return tyInt
	case "min", "max":
		t, ok := g.numeric(&node{op: n.op, args: n.args, line: n.line, col: n.col})
		if !ok {
			return 0
		}
		op := map[string]opcode{"min": opMinI, "max": opMaxI}[n.op]
		if t == tyFloat {
			op++
		}
		g.emit(op, 0, 0, 0, -1)
		return t
	case "clamp": // min(max(x, lo), hi)
		inner := &node{kind: nCall, op: "max", args: []*node{n.args[0], n.args[1]}, line: n.line, col: n.col}
		return g.call(&node{kind: nCall, op: "min", args: []*node{inner, n.args[2]}, line: n.line, col: n.col})
	case "bit":
		ta, tb := g.expr(n.args[0]), g.expr(n.args[1])
		if ta == 0 || tb == 0 {
			return 0
		}
		if ta != tyInt || tb != tyInt {
			g.fail(n, ErrType, "bit(x, n) wants ints, got %s and %s", ta, tb)
			return 0
		}
		g.emit(opBitTest, 0, 0, 0, -1)
		return tyBool
	}
	return 0
}

// wide compiles a register conversion such as s32(hr[0], hr[1]): the
// arguments are registers of one word table, most significant word first.
func (g *gen) wide(n *node, c conv, words int, t typ) typ {
	if len(n.args) != words {
		g.fail(n, ErrType, "%s takes %d register(s), got %d", n.op, words, len(n.args))
		return 0
	}
	var k uint64
	for i, a := range n.args {
		if a.kind != nRef || a.table.IsBits() {
			g.fail(a, ErrType, "%s wants registers like hr[0] or ir[3] as arguments", n.op)
			return 0
		}
		if g.downlink {
			g.fail(a, ErrType, "downlink expressions compute from message points, not registers")
			return 0
		}
		g.useReg(a)
		k |= uint64(a.addr) << (16 * uint(i))
	}
	if c == cvU16 {
		g.emit(opReg, int32(n.args[0].addr), 0, 0, 1)
		return t
	}
	if c == cvS16 {
		g.emit(opRegS16, int32(n.args[0].addr), 0, 0, 1)
		return t
	}
	g.emit(opRegWide, int32(words), int32(c), k, 1)
	return t
}

// target is a compiled downlink destination.
type target struct {
	table modbus.Table
	conv  conv // 0 for a coil
	words int
	addrs [4]int // most significant word first
	lo    int
	hi    int
	t     typ // the type the expression must have (float accepts int)
	text  string
}

func compileTarget(n *node, errs *[]error) (target, bool) {
	fail := func(at *node, format string, args ...any) (target, bool) {
		*errs = append(*errs, &Error{Line: at.line, Col: at.col, Msg: fmt.Sprintf(format, args...), Err: ErrType})
		return target{}, false
	}
	var tg target
	var refs []*node
	switch {
	case n.kind == nRef:
		refs = []*node{n}
		tg.words = 1
		if n.table.IsBits() {
			tg.t = tyBool
		} else {
			tg.conv, tg.t = cvU16, tyInt
		}
	case n.kind == nCall:
		cv, ok := convs[n.op]
		if !ok {
			return fail(n, "a downlink target is a register like hr[3] or a conversion like s32(hr[0], hr[1]), not %s(...)", n.op)
		}
		if len(n.args) != cv.words {
			return fail(n, "%s takes %d register(s), got %d", n.op, cv.words, len(n.args))
		}
		for _, a := range n.args {
			if a.kind != nRef || a.table.IsBits() {
				return fail(a, "%s wants registers like hr[0] as arguments", n.op)
			}
		}
		refs, tg.conv, tg.words, tg.t = n.args, cv.c, cv.words, cv.t
	default:
		return fail(n, "a downlink target is a register like hr[3] or a conversion like s32(hr[0], hr[1])")
	}
	tg.table = refs[0].table
	tg.lo, tg.hi = refs[0].addr, refs[0].addr
	seen := map[int]bool{}
	for i, r := range refs {
		if r.table != tg.table {
			return fail(r, "a target writes one table")
		}
		if !r.table.Writable() {
			return fail(r, "%s is read-only: write hr or coil", r.table)
		}
		if seen[r.addr] {
			return fail(r, "register %s[%d] appears twice", r.table, r.addr)
		}
		seen[r.addr] = true
		tg.addrs[i] = r.addr
		tg.lo, tg.hi = min(tg.lo, r.addr), max(tg.hi, r.addr)
	}
	return tg, true
}

// ErrSyntax and ErrType are wrapped by compile errors (*Error) and, for
// evaluation, by *layout.FieldError values. They are the sentinels of
// package layout (and codec).
var (
	ErrSyntax = layout.ErrSyntax
	ErrType   = layout.ErrType
)
