package mapping

import (
	"fmt"
	"strconv"
	"strings"
)

type tokKind uint8

const (
	tEOF tokKind = iota
	tNewline
	tIdent
	tInt
	tFloat
	tString
	tPunct
)

type token struct {
	kind      tokKind
	text      string // identifier, punctuation, or unquoted string
	ival      int64
	fval      float64
	line, col int
}

func (t token) String() string {
	switch t.kind {
	case tEOF:
		return "end of input"
	case tNewline:
		return "end of line"
	case tString:
		return strconv.Quote(t.text)
	}
	return strconv.Quote(t.text)
}

// Error is a compile error at a line and column (both 1-based; the column
// counts bytes). It wraps ErrSyntax or ErrType.
type Error struct {
	Line, Col int
	Msg       string
	Err       error
}

func (e *Error) Error() string { return fmt.Sprintf("%d:%d: %s", e.Line, e.Col, e.Msg) }
func (e *Error) Unwrap() error { return e.Err }

type lexer struct {
	src       string
	i         int
	line, col int
	toks      []token
	errs      []error
}

var puncts = []string{"<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "+", "-", "*", "/", "%", "&", "|", "^", "<", ">", "!", "(", ")", "[", "]", ",", ":", "=", "?", ";"}

func lex(src string) ([]token, []error) {
	l := &lexer{src: src, line: 1, col: 1}
	for {
		t, ok := l.next()
		if ok {
			l.toks = append(l.toks, t)
		}
		if ok && t.kind == tEOF {
			return l.toks, l.errs
		}
	}
}

func (l *lexer) errorf(line, col int, format string, args ...any) {
	l.errs = append(l.errs, &Error{Line: line, Col: col, Msg: fmt.Sprintf(format, args...), Err: ErrSyntax})
}

func (l *lexer) advance(n int) {
	for k := 0; k < n; k++ {
		if l.src[l.i] == '\n' {
			l.line++
			l.col = 1
		} else {
			l.col++
		}
		l.i++
	}
}

func isLetter(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool  { return c >= '0' && c <= '9' }

// next returns the next token; ok is false when it skipped bad input.
func (l *lexer) next() (token, bool) {
	for l.i < len(l.src) {
		c := l.src[l.i]
		if c == ' ' || c == '\t' || c == '\r' {
			l.advance(1)
			continue
		}
		if c == '#' {
			for l.i < len(l.src) && l.src[l.i] != '\n' {
				l.advance(1)
			}
			continue
		}
		break
	}
	t := token{line: l.line, col: l.col}
	if l.i >= len(l.src) {
		t.kind = tEOF
		return t, true
	}
	c := l.src[l.i]
	switch {
	case c == '\n':
		t.kind = tNewline
		l.advance(1)
		return t, true
	case isLetter(c):
		j := l.i + 1
		for j < len(l.src) && (isLetter(l.src[j]) || isDigit(l.src[j]) || l.src[j] == '.') {
			j++
		}
		t.kind, t.text = tIdent, l.src[l.i:j]
		l.advance(j - l.i)
		return t, true
	case isDigit(c) || c == '.' && l.i+1 < len(l.src) && isDigit(l.src[l.i+1]):
		return l.number(t)
	case c == '"':
		return l.str(t)
	}
	for _, p := range puncts {
		if strings.HasPrefix(l.src[l.i:], p) {
			t.kind, t.text = tPunct, p
			l.advance(len(p))
			return t, true
		}
	}
	l.errorf(t.line, t.col, "unexpected character %q", c)
	l.advance(1)
	return t, false
}

func (l *lexer) number(t token) (token, bool) {
	j := l.i
	if strings.HasPrefix(l.src[j:], "0x") || strings.HasPrefix(l.src[j:], "0X") {
		j += 2
		for j < len(l.src) && (isDigit(l.src[j]) || isLetter(l.src[j])) {
			j++
		}
		text := l.src[l.i:j]
		u, err := strconv.ParseUint(text[2:], 16, 64)
		l.advance(j - l.i)
		if err != nil {
			l.errorf(t.line, t.col, "bad hex number %s", text)
			return t, false
		}
		t.kind, t.text, t.ival = tInt, text, int64(u)
		return t, true
	}
	isFloat := false
	for j < len(l.src) && isDigit(l.src[j]) {
		j++
	}
	if j < len(l.src) && l.src[j] == '.' {
		isFloat = true
		j++
		for j < len(l.src) && isDigit(l.src[j]) {
			j++
		}
	}
	if j < len(l.src) && (l.src[j] == 'e' || l.src[j] == 'E') {
		k := j + 1
		if k < len(l.src) && (l.src[k] == '+' || l.src[k] == '-') {
			k++
		}
		if k < len(l.src) && isDigit(l.src[k]) {
			isFloat = true
			j = k
			for j < len(l.src) && isDigit(l.src[j]) {
				j++
			}
		}
	}
	if j < len(l.src) && (isLetter(l.src[j]) || l.src[j] == '.') {
		for j < len(l.src) && (isLetter(l.src[j]) || isDigit(l.src[j]) || l.src[j] == '.') {
			j++
		}
		text := l.src[l.i:j]
		l.advance(j - l.i)
		l.errorf(t.line, t.col, "bad number %s", text)
		return t, false
	}
	text := l.src[l.i:j]
	l.advance(j - l.i)
	t.text = text
	if isFloat {
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			l.errorf(t.line, t.col, "number %s does not fit a float64", text)
			return t, false
		}
		t.kind, t.fval = tFloat, f
		return t, true
	}
	i, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		l.errorf(t.line, t.col, "integer %s does not fit 64 bits", text)
		return t, false
	}
	t.kind, t.ival = tInt, i
	return t, true
}

func (l *lexer) str(t token) (token, bool) {
	var b strings.Builder
	l.advance(1)
	for l.i < len(l.src) {
		c := l.src[l.i]
		switch {
		case c == '"':
			l.advance(1)
			t.kind, t.text = tString, b.String()
			return t, true
		case c == '\n':
			l.errorf(t.line, t.col, "unterminated string")
			return t, false
		case c == '\\' && l.i+1 < len(l.src) && (l.src[l.i+1] == '"' || l.src[l.i+1] == '\\'):
			b.WriteByte(l.src[l.i+1])
			l.advance(2)
		default:
			b.WriteByte(c)
			l.advance(1)
		}
	}
	l.errorf(t.line, t.col, "unterminated string")
	return t, false
}
