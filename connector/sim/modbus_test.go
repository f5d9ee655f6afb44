package sim

import (
	"testing"
	"time"

	"github.com/simonvetter/modbus"
)

func TestModbusDeviceServesAndAcceptsWrites(t *testing.T) {
	d := NewModbusDevice()
	if err := d.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	c, err := modbus.NewClient(&modbus.ClientConfiguration{URL: "tcp://" + d.Addr(), Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Open(); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	regs, err := c.ReadRegisters(0, 3, modbus.HOLDING_REGISTER)
	if err != nil {
		t.Fatal(err)
	}
	if temp := int16(regs[0]); temp < 150 || temp > 260 {
		t.Fatalf("temperature register %d out of the simulated range", temp)
	}
	if err := c.WriteRegister(10, 300); err != nil {
		t.Fatal(err)
	}
	if v, err := c.ReadRegister(10, modbus.HOLDING_REGISTER); err != nil || v != 300 || d.Writes() != 1 {
		t.Fatalf("setpoint after write = %d (%v), writes=%d", v, err, d.Writes())
	}
	if _, err := c.ReadRegisters(30, 5, modbus.HOLDING_REGISTER); err == nil {
		t.Fatal("read beyond the image accepted")
	}
}
