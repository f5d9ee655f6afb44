package modbus

import (
	"errors"
	"strings"
	"testing"

	"github.com/iotgw/gateway"
)

// TestTableAliases: the points take the table names the connector's
// ranges take, in any case.
func TestTableAliases(t *testing.T) {
	for name, want := range map[string]Table{
		"hr": HoldingRegisters, "holding": HoldingRegisters, "Holding_Registers": HoldingRegisters,
		"ir": InputRegisters, "input": InputRegisters, "input_registers": InputRegisters,
		"coil": Coils, "co": Coils, "COILS": Coils,
		"di": DiscreteInputs, "discrete": DiscreteInputs, "discrete_inputs": DiscreteInputs,
	} {
		rm, err := Config{Points: []PointConfig{{Name: "p", Table: name, Address: 3}}}.Build()
		if err != nil {
			t.Errorf("table %q: %v", name, err)
			continue
		}
		if got := rm.Points()[0].Table; got != want {
			t.Errorf("table %q = %s, want %s", name, got, want)
		}
	}
	if _, err := ParseTableName("holdings"); err == nil {
		t.Error(`ParseTableName("holdings") accepted`)
	}
	// Topics and mapping programs keep the short names only.
	if _, err := ParseTable("holding"); err == nil {
		t.Error(`ParseTable("holding") accepted`)
	}
}

const codecYAML = `codecs:
  - name: regs
    modbus:
      order: abcd
      points:
        - {name: temperature, table: holding, address: 0, type: int16}
        - {name: pump, table: coils, address: 5}
        - name: door
          table: %s
          address: 9
`

func fromYAML(t *testing.T, table string) (*RegisterMap, error) {
	t.Helper()
	cfg, err := gateway.ParseConfig([]byte(strings.Replace(codecYAML, "%s", table, 1)), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return FromSection(cfg.Codecs[0].Spec)
}

// TestFromSectionErrorAtEntry: a bad entry is reported at its own path and
// position, not at the points: key.
func TestFromSectionErrorAtEntry(t *testing.T) {
	if _, err := fromYAML(t, "discrete_inputs"); err != nil {
		t.Fatal(err)
	}
	_, err := fromYAML(t, "doors")
	var ce *gateway.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *gateway.ConfigError", err)
	}
	if ce.Path != "codecs[0].modbus.points[2].table" || ce.Line != 9 || ce.Column != 18 {
		t.Errorf("error at %s (%d:%d), want codecs[0].modbus.points[2].table (9:18): %v", ce.Path, ce.Line, ce.Column, err)
	}
	if !strings.Contains(err.Error(), `unknown Modbus table "doors"`) {
		t.Errorf("err = %v, want the unknown table named", err)
	}

	// A point New rejects is reported at its entry.
	cfg, perr := gateway.ParseConfig([]byte(strings.Replace(strings.Replace(codecYAML, "%s", "di", 1),
		"address: 5}", "address: 5, type: int16}", 1)), "t.yaml")
	if perr != nil {
		t.Fatal(perr)
	}
	_, err = FromSection(cfg.Codecs[0].Spec)
	if !errors.As(err, &ce) || ce.Path != "codecs[0].modbus.points[1]" || ce.Line != 7 || ce.Column != 11 {
		t.Errorf("err = %v, want it at codecs[0].modbus.points[1] (7:11)", err)
	}
}

// FuzzParseTableName: every accepted name parses to a table whose short
// name parses back to it with both parsers, and rejection errors name the
// input.
func FuzzParseTableName(f *testing.F) {
	for _, s := range []string{"hr", "Holding", "discrete_inputs", "co", "", "coilss", "HR\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tab, err := ParseTableName(s)
		if err != nil {
			if !strings.Contains(err.Error(), "unknown Modbus table") {
				t.Fatalf("error %q does not say what is wrong", err)
			}
			return
		}
		if tab < Coils || tab > InputRegisters {
			t.Fatalf("%q parsed to %d", s, tab)
		}
		if back, err := ParseTable(tab.String()); err != nil || back != tab {
			t.Fatalf("%q -> %s -> %v, %v", s, tab, back, err)
		}
		if back, err := ParseTableName(strings.ToUpper(s)); err != nil || back != tab {
			t.Fatalf("%q upper case -> %v, %v", s, back, err)
		}
	})
}
