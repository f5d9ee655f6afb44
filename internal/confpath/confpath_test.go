package confpath

import (
	"testing"

	"github.com/iotgw/gateway"
)

const doc = `connectors:
  - name: plc
    modbus:
      timeout: 1s
      devices:
        - name: a
          ranges:
            - {table: hr, count: 1}
            - table: xx
              count: 2
`

func spec(t *testing.T) gateway.Section {
	t.Helper()
	cfg, err := gateway.ParseConfig([]byte(doc), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Connectors[0].Spec
}

func TestErrorfAtNestedField(t *testing.T) {
	s := spec(t)
	tests := []struct {
		path Path
		want string
	}{
		{Path{"devices", 0, "ranges", 1, "table"}, "connectors[0].modbus.devices[0].ranges[1].table: bad (t.yaml:9:22)"},
		{Path{"devices", 0, "ranges", 0, "table"}, "connectors[0].modbus.devices[0].ranges[0].table: bad (t.yaml:8:23)"},
		{Path{"devices", 0, "ranges", 1}, "connectors[0].modbus.devices[0].ranges[1]: bad (t.yaml:9:15)"},
		{Path{"timeout"}, "connectors[0].modbus.timeout: bad (t.yaml:4:16)"},
		{Path{}, "connectors[0].modbus: bad (t.yaml:4:7)"},
		// Absent parts: the full path, the position of what was found.
		{Path{"devices", 0, "ranges", 7, "table"}, "connectors[0].modbus.devices[0].ranges[7].table: bad (t.yaml:8:13)"},
		{Path{"devices", 0, "nope", 1}, "connectors[0].modbus.devices[0].nope[1]: bad (t.yaml:6:11)"},
		{Path{"timeout", 3}, "connectors[0].modbus.timeout[3]: bad (t.yaml:4:16)"},
	}
	for _, tt := range tests {
		err := Errorf(s, tt.path, "bad")
		if err == nil || err.Error() != tt.want {
			t.Errorf("Errorf(%v) = %v\n want %s", tt.path, err, tt.want)
		}
	}
}

func TestPathString(t *testing.T) {
	if got := (Path{"devices", 1, "ranges", 0, 2, "table"}).String(); got != "devices[1].ranges[0][2].table" {
		t.Fatalf("String = %q", got)
	}
	if got := (Path{3, "x"}).String(); got != "[3].x" {
		t.Fatalf("String = %q", got)
	}
}
