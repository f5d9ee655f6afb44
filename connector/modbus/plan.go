package modbus

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	regmap "github.com/iotgw/gateway/codec/modbus"
)

// Table is one of the four Modbus data tables.
type Table uint8

// The Modbus data tables, with the short names used in frame topics (the
// names package codec/modbus parses).
const (
	HoldingRegisters Table = iota // "hr", function 3, writable (6, 16)
	InputRegisters                // "ir", function 4, read-only
	Coils                         // "coil", function 1, writable (15)
	DiscreteInputs                // "di", function 2, read-only
)

var tableNames = [...]string{"hr", "ir", "coil", "di"}

func (t Table) String() string {
	if int(t) < len(tableNames) {
		return tableNames[t]
	}
	return "table(" + strconv.Itoa(int(t)) + ")"
}

// ParseTable parses a table name as written in YAML, with the names the
// points of the register-map codec take (codec/modbus.ParseTableName, one
// list for both): "hr", "ir", "coil" or "di", or the aliases "holding",
// "holding_registers", "input", "input_registers", "co", "coils",
// "discrete", "discrete_inputs", in any case. Topics take only the short
// names (see ParseTopic).
func ParseTable(s string) (Table, error) {
	t, err := regmap.ParseTableName(s)
	if err != nil {
		return 0, err
	}
	switch t {
	case regmap.HoldingRegisters:
		return HoldingRegisters, nil
	case regmap.InputRegisters:
		return InputRegisters, nil
	case regmap.Coils:
		return Coils, nil
	}
	return DiscreteInputs, nil
}

// isBits reports whether the table holds single bits.
func (t Table) isBits() bool { return t == Coils || t == DiscreteInputs }

// maxPerRequest is the protocol limit of one read: 125 registers or 2000
// bits (a multiple of 8, so a split never leaves a partial byte inside a
// range).
func (t Table) maxPerRequest() int {
	if t.isBits() {
		return 2000
	}
	return 125
}

// Range is a span of addresses of one table that a device map asks for.
type Range struct {
	Table   Table
	Address uint16
	Count   uint16
}

// Block is one read request: the unit the connector polls and the unit of
// one uplink frame.
type Block struct {
	Table Table
	Start uint16
	Count uint16
}

// Topic is the frame topic of the block: "<table>/<start>", e.g. "hr/0"
// or "coil/16".
func (b Block) Topic() string { return b.Table.String() + "/" + strconv.Itoa(int(b.Start)) }

func (b Block) String() string { return fmt.Sprintf("%s/%d+%d", b.Table, b.Start, b.Count) }

// PayloadLen is the length of the block's frame payload: two bytes per
// register, or one byte per eight bits (rounded up).
func (b Block) PayloadLen() int {
	if b.Table.isBits() {
		return (int(b.Count) + 7) / 8
	}
	return 2 * int(b.Count)
}

// ParseTopic parses a block topic "[prefix/]<table>/<address>" as used by
// frames and downlink writes, with table one of hr, ir, coil, di; levels
// before the last two are ignored, as package codec/modbus does.
func ParseTopic(topic string) (Table, uint16, error) {
	i := strings.LastIndexByte(topic, '/')
	if i < 0 {
		return 0, 0, fmt.Errorf("topic %q: want <table>/<address>, e.g. hr/100 or coil/0", topic)
	}
	ts, as := topic[:i], topic[i+1:]
	if j := strings.LastIndexByte(ts, '/'); j >= 0 {
		ts = ts[j+1:]
	}
	t := Table(len(tableNames))
	for k, n := range tableNames {
		if n == ts {
			t = Table(k)
		}
	}
	if int(t) == len(tableNames) {
		return 0, 0, fmt.Errorf("topic %q: unknown table %q (want hr, ir, coil or di)", topic, ts)
	}
	a, err := strconv.ParseUint(as, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("topic %q: address: want 0..65535", topic)
	}
	return t, uint16(a), nil
}

// Plan turns a device's ranges into read requests. With coalesce set,
// ranges of the same table whose gap is at most maxGap addresses are merged
// into one request, as long as the request stays within the protocol limit
// (125 registers, 2000 bits); the gap addresses are read and shipped too,
// which costs bytes but saves round trips. Without coalesce every range is
// its own request (split at the protocol limit). Overlapping and duplicate
// ranges always merge. So do bit ranges of one table that start inside
// the spare bits of the previous block's last payload byte (less than 8
// addresses after it): a packed frame carries no bit count, so no polled
// bit may also sit in another frame's padding. The result is sorted by
// table, then address.
func Plan(ranges []Range, coalesce bool, maxGap uint16) []Block {
	rs := make([]Range, 0, len(ranges))
	for _, r := range ranges {
		if r.Count > 0 {
			rs = append(rs, r)
		}
	}
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Table != rs[j].Table {
			return rs[i].Table < rs[j].Table
		}
		return rs[i].Address < rs[j].Address
	})
	var out []Block
	var cur Block
	var curEnd int // exclusive
	have := false
	flush := func() {
		if have {
			out = appendSplit(out, cur.Table, int(cur.Start), curEnd)
		}
		have = false
	}
	for _, r := range rs {
		start, end := int(r.Address), int(r.Address)+int(r.Count)
		if end > 1<<16 {
			end = 1 << 16
		}
		if have && r.Table == cur.Table {
			gap := start - curEnd
			overlap := gap < 0
			fits := end-int(cur.Start) <= r.Table.maxPerRequest()
			inPadding := r.Table.isBits() && start < int(cur.Start)+(curEnd-int(cur.Start)+7)&^7
			if overlap || inPadding || coalesce && gap <= int(maxGap) && fits {
				if end > curEnd {
					curEnd = end
				}
				continue
			}
		}
		flush()
		cur, curEnd, have = Block{Table: r.Table, Start: uint16(start)}, end, true
	}
	flush()
	return out
}

// appendSplit appends [start, end) of t as blocks no larger than the
// protocol limit.
func appendSplit(out []Block, t Table, start, end int) []Block {
	max := t.maxPerRequest()
	for start < end {
		n := end - start
		if n > max {
			n = max
		}
		out = append(out, Block{Table: t, Start: uint16(start), Count: uint16(n)})
		start += n
	}
	return out
}
