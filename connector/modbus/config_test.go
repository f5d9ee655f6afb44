package modbus

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

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
	rtu := ok + `        - name: meter5
          transport: rtu
          address: /dev/ttyUSB0
          serial: {baud: 9600, parity: none, stop_bits: 2}
          unit_id: 5
          ranges: [{table: ir, address: 0, count: 2}]
        - name: meter7
          transport: rtu
          address: /dev/ttyUSB0
          serial: {baud: 9600, parity: none, stop_bits: 2}
          unit_id: 7
          ranges: [{table: ir, address: 0, count: 2}]
        - name: gw
          transport: rtu-over-tcp
          address: 127.0.0.1:4001
          unit_id: 7
          ranges: [{table: hr, address: 0, count: 2}]
`
	tests := []struct{ yaml, wantErr string }{
		{ok, ""},
		{strings.Replace(ok, "timeout: 500ms", "timout: 500ms", 1), "connectors[0].modbus.timout: unknown key"},
		{strings.Replace(ok, "table: hr", "table: xx", 1), `connectors[0].modbus.devices[0].ranges[0].table: unknown Modbus table "xx"`},
		{strings.Replace(ok, "count: 10", "count: 0", 1), "devices[0].ranges[0].count"},
		{strings.Replace(ok, "retries: 2", "retries: -1", 1), "connectors[0].modbus.retries: must not be negative"},
		{strings.Replace(ok, "address: 127.0.0.1:502", "address: ''", 1), "connectors[0].modbus.devices[0].address: required"},
		{strings.Replace(ok, "interval: 2s", "interval: soon", 1), "connectors[0].modbus.devices[0].interval: want a duration"},
		{"connectors:\n  - name: plc\n    modbus: {}\n", "connectors[0].modbus.devices: at least one device"},
		{strings.Replace(ok, "coalesce: false", "reconnect: {reset_after_requests: 5, stable: 30s}", 1), ""},
		{strings.Replace(ok, "coalesce: false", "reconnect: {reset_after: 5}", 1), "connectors[0].modbus.reconnect.reset_after: unknown key"},
		{strings.Replace(ok, "coalesce: false", "reconnect: {reset_after_requests: -1}", 1), "connectors[0].modbus.reconnect.reset_after_requests: must not be negative"},
		{strings.Replace(ok, "coalesce: false", "reconnect: {stable: -1s}", 1), "connectors[0].modbus.reconnect.stable: must be positive"},
		{rtu, ""},
		{strings.Replace(rtu, "transport: rtu\n", "transport: rs485\n", 1), `connectors[0].modbus.devices[1].transport: unknown transport "rs485"`},
		{strings.Replace(rtu, "baud: 9600", "baud: 9601", 1), "connectors[0].modbus.devices[1].serial.baud: baud 9601: not a standard rate"},
		{strings.Replace(rtu, "parity: none", "parity: mark", 1), `connectors[0].modbus.devices[1].serial.parity: unknown parity "mark"`},
		{strings.Replace(rtu, "stop_bits: 2", "stop_bits: 3", 1), "connectors[0].modbus.devices[1].serial.stop_bits: want 1 or 2"},
		{strings.Replace(rtu, "unit_id: 7", "unit_id: 5", 1), "connectors[0].modbus.devices[2].unit_id: unit 5 on /dev/ttyUSB0 is also devices[1]"},
		{strings.Replace(rtu, "unit_id: 7", "unit_id: 248", 1), "connectors[0].modbus.devices[2].unit_id: RTU unit ids are 1..247"},
		{strings.Replace(rtu, "{baud: 9600, parity: none, stop_bits: 2}\n          unit_id: 7", "{baud: 19200}\n          unit_id: 7", 1), "connectors[0].modbus.devices[2].serial: line /dev/ttyUSB0 is also devices[1]'s, with another setting"},
		{strings.Replace(rtu, "transport: rtu-over-tcp", "transport: rtu-over-tcp\n          serial: {baud: 9600}", 1), "connectors[0].modbus.devices[3].serial: only for transport: rtu"},
		{strings.Replace(rtu, "serial: {baud: 9600, parity: none, stop_bits: 2}", "serial: {bud: 9600}", 1), "connectors[0].modbus.devices[1].serial.bud: unknown key"},
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

// TestRangeTablesAndErrorPosition: ranges take the table names of the
// register-map codec's points (one list), and a bad entry is reported at
// its own path and position.
func TestRangeTablesAndErrorPosition(t *testing.T) {
	reg := gateway.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	const doc = `connectors:
  - name: plc
    modbus:
      devices:
        - name: plc1
          address: 127.0.0.1:502
          ranges:
            - {table: %s, address: 0, count: 10}
            - table: %s
              count: 2
`
	build := func(a, b string) error {
		cfg, err := gateway.ParseConfig([]byte(fmt.Sprintf(doc, a, b)), "t.yaml")
		if err == nil {
			_, err = gateway.New(gateway.WithRegistry(reg), gateway.WithConfig(cfg))
		}
		return err
	}
	for _, pair := range [][2]string{{"hr", "coil"}, {"holding", "coils"}, {"Holding_Registers", "discrete_inputs"}, {"input", "di"}} {
		if err := build(pair[0], pair[1]); err != nil {
			t.Errorf("tables %v: %v", pair, err)
		}
	}
	err := build("holding", "coilz")
	var ce *gateway.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want a *gateway.ConfigError", err)
	}
	if ce.Path != "connectors[0].modbus.devices[0].ranges[1].table" || ce.Line != 9 || ce.Column != 22 {
		t.Errorf("error at %s (%d:%d), want connectors[0].modbus.devices[0].ranges[1].table (9:22): %v", ce.Path, ce.Line, ce.Column, err)
	}
	if !strings.Contains(err.Error(), `unknown Modbus table "coilz"`) {
		t.Errorf("err = %v, want the unknown table named", err)
	}
}

func TestWithBackoffReset(t *testing.T) {
	dev := WithDevice(Device{Name: "a", Address: "127.0.0.1:502"})
	c, err := New(dev)
	if err != nil || c.s.resetAfter != 1 || c.s.stable != 10*time.Second {
		t.Fatalf("defaults: reset after %d requests, stable %v, err %v; want 1, 10s", c.s.resetAfter, c.s.stable, err)
	}
	c, err = New(dev, WithBackoff(time.Millisecond, time.Second, time.Minute), WithBackoffReset(0, 5*time.Second))
	if err != nil || c.s.resetAfter != 0 || c.s.stable != 5*time.Second {
		t.Fatalf("WithBackoffReset(0, 5s): %d, %v, %v", c.s.resetAfter, c.s.stable, err)
	}
	for _, bad := range []Option{WithBackoffReset(-1, time.Second), WithBackoffReset(1, 0)} {
		if _, err := New(dev, bad); err == nil {
			t.Error("bad WithBackoffReset accepted")
		}
	}
}
