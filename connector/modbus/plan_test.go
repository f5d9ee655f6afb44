package modbus

import (
	"testing"
)

func TestPlan(t *testing.T) {
	hr := func(a, n uint16) Range { return Range{Table: HoldingRegisters, Address: a, Count: n} }
	co := func(a, n uint16) Range { return Range{Table: Coils, Address: a, Count: n} }
	di := func(a, n uint16) Range { return Range{Table: DiscreteInputs, Address: a, Count: n} }
	tests := []struct {
		name     string
		ranges   []Range
		coalesce bool
		gap      uint16
		want     []Block
	}{
		{"single", []Range{hr(0, 10)}, true, 16, []Block{{HoldingRegisters, 0, 10}}},
		{"gap within limit merges", []Range{hr(0, 10), hr(20, 5)}, true, 10, []Block{{HoldingRegisters, 0, 25}}},
		{"gap too wide stays apart", []Range{hr(0, 10), hr(21, 5)}, true, 10, []Block{{HoldingRegisters, 0, 10}, {HoldingRegisters, 21, 5}}},
		{"no coalescing", []Range{hr(0, 10), hr(10, 5)}, false, 100, []Block{{HoldingRegisters, 0, 10}, {HoldingRegisters, 10, 5}}},
		{"overlap always merges", []Range{hr(0, 10), hr(5, 10)}, false, 0, []Block{{HoldingRegisters, 0, 15}}},
		{"unsorted input", []Range{hr(50, 2), hr(0, 2)}, true, 100, []Block{{HoldingRegisters, 0, 52}}},
		{"register limit 125", []Range{hr(0, 100), hr(100, 50)}, true, 16, []Block{{HoldingRegisters, 0, 100}, {HoldingRegisters, 100, 50}}},
		{"long range split", []Range{hr(0, 300)}, true, 16, []Block{{HoldingRegisters, 0, 125}, {HoldingRegisters, 125, 125}, {HoldingRegisters, 250, 50}}},
		{"coil limit 2000", []Range{co(0, 1504), co(1504, 600)}, true, 0, []Block{{Coils, 0, 1504}, {Coils, 1504, 600}}},
		{"coil limit with a partial byte", []Range{co(0, 1500), co(1500, 600)}, true, 0, []Block{{Coils, 0, 2000}, {Coils, 2000, 100}}},
		{"tables never merge", []Range{hr(0, 1), {Table: InputRegisters, Address: 1, Count: 1}}, true, 16,
			[]Block{{HoldingRegisters, 0, 1}, {InputRegisters, 1, 1}}},
		{"bits in spare bits merge without coalescing", []Range{co(0, 10), co(12, 4)}, false, 0, []Block{{Coils, 0, 16}}},
		{"bits past the spare bits stay apart", []Range{co(0, 10), co(16, 4)}, false, 0, []Block{{Coils, 0, 10}, {Coils, 16, 4}}},
		{"discrete inputs too", []Range{di(3, 5), di(10, 1)}, false, 0, []Block{{DiscreteInputs, 3, 8}}},
		{"registers have no spare bits", []Range{hr(0, 10), hr(12, 4)}, false, 0, []Block{{HoldingRegisters, 0, 10}, {HoldingRegisters, 12, 4}}},
		{"spare-bit merge past the limit splits on a byte", []Range{co(0, 1995), co(1998, 10)}, false, 0, []Block{{Coils, 0, 2000}, {Coils, 2000, 8}}},
		{"top of address space", []Range{hr(65535, 1)}, true, 16, []Block{{HoldingRegisters, 65535, 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Plan(tt.ranges, tt.coalesce, tt.gap)
			if len(got) != len(tt.want) {
				t.Fatalf("Plan = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("Plan = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestParseWrite(t *testing.T) {
	tests := []struct {
		topic   string
		payload []byte
		wantErr bool
		regs    []uint16
		coils   []bool
	}{
		{"hr/10", []byte{0x12, 0x34}, false, []uint16{0x1234}, nil},
		{"hr/10", []byte{0, 1, 0, 2}, false, []uint16{1, 2}, nil},
		{"hr/10", []byte{1}, true, nil, nil},
		{"hr/10", nil, true, nil, nil},
		{"hr/65535", []byte{0, 1, 0, 2}, true, nil, nil},
		{"coil/3", []byte{0b101}, false, nil, []bool{true, false, true, false, false, false, false, false}},
		{"plc1/coil/3", []byte{0x80, 1}, false, nil, []bool{false, false, false, false, false, false, false, true, true, false, false, false, false, false, false, false}},
		{"coil/65528", []byte{0xff}, false, nil, []bool{true, true, true, true, true, true, true, true}},
		{"coil/65529", []byte{0xff}, true, nil, nil},
		{"coil/0", make([]byte, 247), true, nil, nil},
		{"coil/0", nil, true, nil, nil},
		{"co/3", []byte{1}, true, nil, nil},
		{"holding/3", []byte{0, 1}, true, nil, nil},
		{"ir/3", []byte{0, 1}, true, nil, nil},
		{"di/3", []byte{1}, true, nil, nil},
		{"xx/3", []byte{1}, true, nil, nil},
		{"hr", []byte{1, 2}, true, nil, nil},
		{"hr/70000", []byte{1, 2}, true, nil, nil},
	}
	for _, tt := range tests {
		w, err := ParseWrite(tt.topic, tt.payload)
		if (err != nil) != tt.wantErr {
			t.Fatalf("ParseWrite(%q, %x) err = %v, wantErr %v", tt.topic, tt.payload, err, tt.wantErr)
		}
		if err != nil {
			continue
		}
		if len(w.Registers) != len(tt.regs) || len(w.Coils) != len(tt.coils) {
			t.Fatalf("ParseWrite(%q) = %+v", tt.topic, w)
		}
		for i := range tt.regs {
			if w.Registers[i] != tt.regs[i] {
				t.Fatalf("register %d = %#x, want %#x", i, w.Registers[i], tt.regs[i])
			}
		}
		for i := range tt.coils {
			if w.Coils[i] != tt.coils[i] {
				t.Fatalf("coil %d = %v", i, w.Coils[i])
			}
		}
	}
}

// FuzzParseWrite: any topic and payload give a request or an error, never
// a panic, and an accepted request fits the protocol.
func FuzzParseWrite(f *testing.F) {
	f.Add("hr/10", []byte{0x12, 0x34})
	f.Add("coil/0", []byte{1, 0})
	f.Add("ir/1", []byte{})
	f.Add("hr/65535", []byte{1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, topic string, payload []byte) {
		w, err := ParseWrite(topic, payload)
		if err != nil {
			return
		}
		n := len(w.Registers) + len(w.Coils)
		if n == 0 || int(w.Address)+n > 1<<16 {
			t.Fatalf("accepted out-of-range write %+v", w)
		}
		if w.Table == HoldingRegisters && (len(w.Registers) > 123 || len(payload) != 2*len(w.Registers)) {
			t.Fatalf("bad register write %+v from %d bytes", w, len(payload))
		}
		if w.Table == Coils && (len(w.Coils) > 1968 || len(w.Coils) != 8*len(payload)) {
			t.Fatalf("bad coil write of %d coils from %d bytes", len(w.Coils), len(payload))
		}
		for i, v := range w.Coils {
			if v != (payload[i/8]>>(i%8)&1 == 1) {
				t.Fatalf("coil %d = %v from payload % x", i, v, payload)
			}
		}
	})
}

// FuzzPlan: the plan covers every requested address, stays within the
// protocol limit, and never reads a table that was not asked for.
func FuzzPlan(f *testing.F) {
	f.Add([]byte{0, 0, 0, 10, 0, 0, 20, 5}, true, uint16(16))
	f.Add([]byte{2, 255, 250, 255}, false, uint16(0))
	f.Fuzz(func(t *testing.T, spec []byte, coalesce bool, gap uint16) {
		var rs []Range
		for i := 0; i+3 < len(spec) && len(rs) < 64; i += 4 {
			tb := Table(spec[i] % 4)
			addr := uint16(spec[i+1])<<8 | uint16(spec[i+2])
			cnt := uint16(spec[i+3])
			if int(addr)+int(cnt) > 1<<16 {
				cnt = uint16(1<<16 - int(addr))
			}
			rs = append(rs, Range{Table: tb, Address: addr, Count: cnt})
		}
		blocks := Plan(rs, coalesce, gap)
		for _, b := range blocks {
			if b.Count == 0 || int(b.Count) > b.Table.maxPerRequest() || int(b.Start)+int(b.Count) > 1<<16 {
				t.Fatalf("bad block %v", b)
			}
			// No block starts in the spare bits of another's last byte.
			for _, o := range blocks {
				spare := int(b.Start) + 8*b.PayloadLen()
				if b.Table.isBits() && o.Table == b.Table && int(o.Start) >= int(b.Start)+int(b.Count) && int(o.Start) < spare {
					t.Fatalf("block %v starts in the spare bits of %v", o, b)
				}
			}
		}
		for _, r := range rs {
			for a := int(r.Address); a < int(r.Address)+int(r.Count); a++ {
				covered := false
				for _, b := range blocks {
					if b.Table == r.Table && a >= int(b.Start) && a < int(b.Start)+int(b.Count) {
						covered = true
						break
					}
				}
				if !covered {
					t.Fatalf("address %s/%d not covered by %v", r.Table, a, blocks)
				}
			}
		}
		want := 0
		for _, r := range rs {
			want += int(r.Count)
		}
		if want > 0 && len(blocks) == 0 {
			t.Fatalf("no blocks for %v", rs)
		}
	})
}
