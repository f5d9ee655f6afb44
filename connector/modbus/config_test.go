package modbus

import (
	"strings"
	"testing"

	"github.com/iotgw/gateway"
)

func TestRegisterStrictYAML(t *testing.T) {
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	ok := `connectors:
  - name: plc
    modbus:
      timeout: 500ms
      retries: 2
      coalesce: false
      devices:
        - name: plc1
          address: 127.0.0.1:502
          interval: 2s
          ranges:
            - {table: hr, address: 0, count: 10}
            - {table: coils, address: 100, count: 8}
`
	tests := []struct{ yaml, wantErr string }{
		{ok, ""},
		{strings.Replace(ok, "timeout: 500ms", "timout: 500ms", 1), "connectors[0].modbus.timout: unknown key"},
		{strings.Replace(ok, "table: hr", "table: xx", 1), "connectors[0].modbus.devices: devices[0].ranges[0].table: unknown table"},
		{strings.Replace(ok, "count: 10", "count: 0", 1), "devices[0].ranges[0].count"},
		{strings.Replace(ok, "retries: 2", "retries: -1", 1), "connectors[0].modbus.retries: must not be negative"},
		{strings.Replace(ok, "address: 127.0.0.1:502", "address: ''", 1), "devices[0].address: required"},
		{strings.Replace(ok, "interval: 2s", "interval: soon", 1), "connectors[0].modbus.devices[0].interval: want a duration"},
		{"connectors:\n  - name: plc\n    modbus: {}\n", "connectors[0].modbus.devices: at least one device"},
	}
	for _, tt := range tests {
		cfg, err := gateway.ParseConfig([]byte(tt.yaml), "t.yaml")
		if err == nil {
			_, err = gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg))
		}
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("err = %v\n want %q", err, tt.wantErr)
		}
	}
}
