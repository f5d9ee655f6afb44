package modbus

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/iotgw/gateway/codec/layout"
)

// Table is one of the four Modbus data tables.
type Table uint8

// The Modbus tables. Coils and holding registers are writable.
const (
	Coils            Table = iota + 1 // "coil": read/write bits
	DiscreteInputs                    // "di": read-only bits
	HoldingRegisters                  // "hr": read/write 16-bit registers
	InputRegisters                    // "ir": read-only 16-bit registers
)

var tableNames = [...]string{"", "coil", "di", "hr", "ir"}

func (t Table) String() string {
	if t > 0 && int(t) < len(tableNames) {
		return tableNames[t]
	}
	return "table(" + strconv.Itoa(int(t)) + ")"
}

// ParseTable parses "coil", "di", "hr" or "ir", the names of topics and
// mapping programs. Configuration takes more spellings: see
// ParseTableName.
func ParseTable(s string) (Table, error) {
	for i, n := range tableNames {
		if i > 0 && n == s {
			return Table(i), nil
		}
	}
	return 0, fmt.Errorf("unknown Modbus table %q (want coil, di, hr or ir)", s)
}

// tableAliases are the table names configuration accepts, in this
// package's points and in the ranges of package connector/modbus alike.
var tableAliases = map[string]Table{
	"hr": HoldingRegisters, "holding": HoldingRegisters, "holding_registers": HoldingRegisters,
	"ir": InputRegisters, "input": InputRegisters, "input_registers": InputRegisters,
	"coil": Coils, "co": Coils, "coils": Coils,
	"di": DiscreteInputs, "discrete": DiscreteInputs, "discrete_inputs": DiscreteInputs,
}

// ParseTableName parses a table name as written in configuration, in any
// case: the short names hr, ir, coil and di, or the aliases holding,
// holding_registers, input, input_registers, co, coils, discrete and
// discrete_inputs. Topics and mapping programs take only the short names
// (ParseTable, ParseBlock).
func ParseTableName(s string) (Table, error) {
	if t, ok := tableAliases[strings.ToLower(s)]; ok {
		return t, nil
	}
	return 0, fmt.Errorf("unknown Modbus table %q (want hr, ir, coil or di, or holding, input, coils, discrete)", s)
}

// IsBits reports whether the table holds single bits (coils, discrete
// inputs) rather than 16-bit registers.
func (t Table) IsBits() bool { return t == Coils || t == DiscreteInputs }

// Writable reports whether a master can write the table.
func (t Table) Writable() bool { return t == Coils || t == HoldingRegisters }

// Block names a contiguous range of one table starting at Start: what one
// Modbus read or write request covers. Its text form, used as Frame.Topic
// and Message.Topic, is "<table>/<start>", e.g. "hr/100"; any levels
// before those two (a device prefix such as "plc1/hr/100") are ignored.
type Block struct {
	Table Table
	Start uint16
}

// String returns the topic form, e.g. "hr/100".
func (b Block) String() string { return string(b.AppendText(nil)) }

// AppendText appends the topic form to dst.
func (b Block) AppendText(dst []byte) []byte {
	dst = append(dst, b.Table.String()...)
	dst = append(dst, '/')
	return strconv.AppendUint(dst, uint64(b.Start), 10)
}

// ParseBlock parses a topic of the form "[prefix/]<table>/<start>". It
// does not allocate.
func ParseBlock(topic string) (Block, error) {
	i := strings.LastIndexByte(topic, '/')
	if i < 0 {
		return Block{}, blockErr(topic)
	}
	tab := topic[:i]
	if j := strings.LastIndexByte(tab, '/'); j >= 0 {
		tab = tab[j+1:]
	}
	var b Block
	for k, n := range tableNames {
		if k > 0 && n == tab {
			b.Table = Table(k)
		}
	}
	start, err := strconv.ParseUint(topic[i+1:], 10, 16)
	if b.Table == 0 || err != nil {
		return Block{}, blockErr(topic)
	}
	b.Start = uint16(start)
	return b, nil
}

func blockErr(topic string) error {
	return &layout.FieldError{Codec: "modbus", Field: "topic", Offset: -1,
		Err: fmt.Errorf("%w: topic %q does not name a register block like hr/0, ir/100, coil/0 or di/8", layout.ErrSyntax, topic)}
}
