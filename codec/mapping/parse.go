package mapping

import (
	"fmt"

	"github.com/iotgw/gateway/codec/modbus"
)

type nodeKind uint8

const (
	nInt nodeKind = iota
	nFloat
	nBool
	nName
	nRef
	nUnary
	nBinary
	nCall
	nCond
)

type node struct {
	kind      nodeKind
	line, col int
	op        string // operator or function name
	ival      int64
	fval      float64
	name      string
	table     modbus.Table
	addr      int
	args      []*node
}

type uplinkStmt struct {
	name      string
	unit      string
	expr      *node
	line, col int
}

type downlinkStmt struct {
	target      *node
	expr        *node
	line, col   int
	eline, ecol int // where the expression starts
}

type parser struct {
	toks []token
	p    int
	errs []error
	up   []uplinkStmt
	down []downlinkStmt
}

// maxDepth bounds expression nesting so a hostile source cannot exhaust
// the stack of the parser.
const maxDepth = 200

type bail struct{}

func (p *parser) peek() token { return p.toks[p.p] }
func (p *parser) take() token {
	t := p.toks[p.p]
	if t.kind != tEOF {
		p.p++
	}
	return t
}

func (p *parser) is(kind tokKind, text string) bool {
	t := p.peek()
	return t.kind == kind && (text == "" || t.text == text)
}

func (p *parser) fail(t token, format string, args ...any) {
	p.errs = append(p.errs, &Error{Line: t.line, Col: t.col, Msg: fmt.Sprintf(format, args...), Err: ErrSyntax})
	panic(bail{})
}

func (p *parser) expect(text string) token {
	t := p.peek()
	if t.kind != tPunct || t.text != text {
		p.fail(t, "want %q, got %s", text, t)
	}
	return p.take()
}

func parse(toks []token) *parser {
	p := &parser{toks: toks}
	for !p.is(tEOF, "") {
		p.statement()
	}
	return p
}

// statement parses one line, recovering at the end of the line on error.
func (p *parser) statement() {
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(bail); !ok {
				panic(r)
			}
			for !p.is(tEOF, "") && !p.is(tNewline, "") && !p.is(tPunct, ";") {
				p.take()
			}
			if !p.is(tEOF, "") {
				p.take()
			}
		}
	}()
	if p.is(tNewline, "") || p.is(tPunct, ";") {
		p.take()
		return
	}
	start := p.peek()
	if start.kind == tIdent && p.toks[p.p+1].kind == tPunct && p.toks[p.p+1].text == ":" {
		p.take()
		p.take()
		st := uplinkStmt{name: start.text, line: start.line, col: start.col}
		st.expr = p.expr(0)
		if p.is(tIdent, "unit") {
			p.take()
			u := p.peek()
			if u.kind != tString {
				p.fail(u, "want a quoted unit after unit, got %s", u)
			}
			st.unit = p.take().text
		}
		p.end()
		p.up = append(p.up, st)
		return
	}
	target := p.expr(0)
	if !p.is(tPunct, "=") {
		t := p.peek()
		p.fail(t, "want ':' after a point name (uplink) or '=' after a register target (downlink), got %s", t)
	}
	p.take()
	et := p.peek()
	st := downlinkStmt{target: target, line: start.line, col: start.col, eline: et.line, ecol: et.col}
	st.expr = p.expr(0)
	p.end()
	p.down = append(p.down, st)
}

func (p *parser) end() {
	t := p.peek()
	switch {
	case t.kind == tEOF:
	case t.kind == tNewline, t.kind == tPunct && t.text == ";":
		p.take()
	default:
		p.fail(t, "want end of line, got %s", t)
	}
}

// Binary operator precedence, as in Go.
var precedence = map[string]int{
	"||": 1, "&&": 2,
	"==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3,
	"+": 4, "-": 4, "|": 4, "^": 4,
	"*": 5, "/": 5, "%": 5, "<<": 5, ">>": 5, "&": 5,
}

// expr parses a conditional expression: or-expression [? expr : expr].
func (p *parser) expr(depth int) *node {
	if depth > maxDepth {
		p.fail(p.peek(), "expression nested deeper than %d", maxDepth)
	}
	c := p.binary(1, depth)
	if p.is(tPunct, "?") {
		q := p.take()
		a := p.expr(depth + 1)
		p.expect(":")
		b := p.expr(depth + 1)
		return &node{kind: nCond, line: q.line, col: q.col, args: []*node{c, a, b}}
	}
	return c
}

func (p *parser) binary(minPrec, depth int) *node {
	left := p.unary(depth)
	for {
		t := p.peek()
		prec, ok := precedence[t.text]
		if t.kind != tPunct || !ok || prec < minPrec {
			return left
		}
		p.take()
		right := p.binary(prec+1, depth+1)
		left = &node{kind: nBinary, op: t.text, line: t.line, col: t.col, args: []*node{left, right}}
	}
}

func (p *parser) unary(depth int) *node {
	if depth > maxDepth {
		p.fail(p.peek(), "expression nested deeper than %d", maxDepth)
	}
	t := p.peek()
	if t.kind == tPunct && (t.text == "-" || t.text == "!") {
		p.take()
		x := p.unary(depth + 1)
		return &node{kind: nUnary, op: t.text, line: t.line, col: t.col, args: []*node{x}}
	}
	return p.primary(depth)
}

func (p *parser) primary(depth int) *node {
	t := p.take()
	switch t.kind {
	case tInt:
		return &node{kind: nInt, ival: t.ival, line: t.line, col: t.col}
	case tFloat:
		return &node{kind: nFloat, fval: t.fval, line: t.line, col: t.col}
	case tPunct:
		if t.text == "(" {
			x := p.expr(depth + 1)
			p.expect(")")
			return x
		}
	case tIdent:
		switch {
		case t.text == "true" || t.text == "false":
			n := &node{kind: nBool, line: t.line, col: t.col}
			if t.text == "true" {
				n.ival = 1
			}
			return n
		case p.is(tPunct, "["):
			tab, err := modbus.ParseTable(t.text)
			if err != nil {
				p.fail(t, "%s[...] is not a register table (want hr, ir, coil or di)", t.text)
			}
			p.take()
			a := p.take()
			if a.kind != tInt || a.ival < 0 || a.ival > 65535 {
				p.fail(a, "want a register address 0..65535, got %s", a)
			}
			p.expect("]")
			return &node{kind: nRef, table: tab, addr: int(a.ival), line: t.line, col: t.col}
		case p.is(tPunct, "("):
			p.take()
			n := &node{kind: nCall, op: t.text, line: t.line, col: t.col}
			if !p.is(tPunct, ")") {
				for {
					n.args = append(n.args, p.expr(depth+1))
					if !p.is(tPunct, ",") {
						break
					}
					p.take()
				}
			}
			p.expect(")")
			return n
		}
		return &node{kind: nName, name: t.text, line: t.line, col: t.col}
	}
	p.fail(t, "want a number, name, register or '(', got %s", t)
	return nil
}
