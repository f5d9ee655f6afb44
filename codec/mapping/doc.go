// Package mapping is a small declarative language that names the fields
// of a register-based device and converts them both ways: uplink lines turn
// a polled register block into named, typed, scaled points; downlink lines
// turn the points of a command into a register write.
//
// The happy path:
//
//	m, err := mapping.Compile("temperature: s16(hr[0]) * 0.1 unit \"C\"\ns16(hr[0]) = round(temperature * 10)")
//	err = m.Decode(&gateway.Frame{Topic: "hr/0", Payload: regs}, msg) // temperature = 21.5 C
//	regs, err = m.Encode(&gateway.Message{Topic: "hr/0", Points: msg.Points}, nil)
//
// Frames follow the block contract of package codec/modbus: Topic names
// the block ("hr/0", "ir/100", "coil/0", "di/8") and Payload holds its
// registers big-endian (bits packed LSB first for coil and di).
//
// # Example
//
//	# uplink: name ':' expression [unit "text"]
//	temperature: s16(hr[0]) * 0.1  unit "C"
//	humidity:    hr[1] / 100.0     unit "%"
//	energy:      u32(hr[3], hr[2]) unit "Wh"   # low word first: name the high word first
//	flow:        f32(hr[4], hr[5])
//	alarm:       bit(hr[6], 3)
//	running:     coil[0]
//	dewpoint:    temperature - (100 - humidity) / 5   # earlier points by name
//
//	# downlink: target '=' expression over the command's points
//	s16(hr[0])        = round(temperature * 10)
//	hr[1]             = round(humidity * 100)
//	u32(hr[3], hr[2]) = energy
//	f32(hr[4], hr[5]) = flow
//	coil[0]           = running
//
// # Grammar
//
//	program   = { line } .
//	line      = [ uplink | downlink ] [ "#" comment ] ( newline | ";" | EOF ) .
//	uplink    = name ":" expr [ "unit" string ] .
//	downlink  = target "=" expr .
//	target    = ref | conv "(" ref { "," ref } ")" .
//	ref       = table "[" integer "]" .
//	table     = "hr" | "ir" | "coil" | "di" .
//	conv      = "u16" | "s16" | "u32" | "s32" | "f32" | "u64" | "s64" | "f64" .
//	expr      = binary [ "?" expr ":" expr ] .
//	binary    = unary { binop unary } .            (precedence below)
//	unary     = ( "-" | "!" ) unary | primary .
//	primary   = integer | float | "true" | "false" | name | ref
//	          | conv "(" ref { "," ref } ")" | func "(" [ expr { "," expr } ] ")"
//	          | "(" expr ")" .
//	name      = letter { letter | digit | "_" | "." } .
//	integer   = decimal | "0x" hex .   float = digits "." digits [ exponent ] .
//	string    = '"' { char | '\"' | '\\' } '"' .
//
// Binary operators bind as in Go, tightest first: * / % << >> &, then
// + - | ^, then == != < <= > >=, then &&, then ||. && and || and ?: short
// circuit.
//
// # Types
//
// Every expression is int (64-bit), float (64-bit) or bool, checked at
// compile time. hr[n] and ir[n] are registers read as unsigned 16-bit
// ints; coil[n] and di[n] are bools. The conversions read registers, most
// significant word first, as u16, s16, u32, s32, u64, s64 (ints; u64 keeps
// its 64 bits in the int) or f32, f64 (floats); each argument must be a
// register of hr or ir. + - * and comparisons work on ints and floats
// (mixed operands become float); / always yields float; % & | ^ << >> need
// ints; ! && || need bools. Functions: round, floor, ceil, trunc, int
// (float to int; an int passes through), float, abs, min, max,
// clamp(x, lo, hi), bit(x, n) (bool). An uplink point has the type of its
// expression and becomes an Int, Float or Bool value. Integer arithmetic
// wraps; integer % by zero, rounding NaN or infinity, and negative shifts
// are evaluation errors naming the point.
//
// Uplink lines may use points defined on earlier lines by name. Downlink
// expressions use the points of the command by name and cannot read
// registers; a name defined by an uplink line has that line's type, any
// other name is a float. The expression's type must match the target: ints
// for u16..s64 (range-checked on write: ErrRange), floats (or ints) for f32
// and f64 (NaN, infinity and f32 overflow are ErrRange), bools for coils.
// A float written to an int target is a type error: say how to round. ir
// and di are read-only; a register may be the target of one line only.
//
// # Evaluation
//
// Compile checks everything once and emits code for a small stack machine
// (at most 32 deep). Decode and Encode run it without allocating; Decode of
// a point whose registers are not all in the frame's block skips it, so
// one mapping serves every block a poller reads.
//
// Round trips: when every uplink point has a downlink line that inverts
// it (as above), Encode(Decode(x)) == x for the registers the lines cover;
// a float scaled by a power of ten and written back with round() restores
// the original integer exactly.
//
// # Why a hand-written parser
//
// The language is small, and the gateway needs things a general expression
// library does not give: static int/float/bool types with errors at a line
// and column, register references as first-class targets that run in both
// directions, and evaluation over a fixed stack with no interface boxing,
// so decoding a point costs no allocation. It also adds no dependency to
// firmware builds.
package mapping
