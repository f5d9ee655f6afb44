//go:build !linux

package modbus

import (
	"errors"
	"fmt"
)

func checkBaud(b int) error {
	if b <= 0 {
		return fmt.Errorf("baud %d: must be positive", b)
	}
	return nil
}

// openSerial is only implemented on Linux; RTU over TCP works everywhere.
func openSerial(path string, _ Serial) (rtuPort, error) {
	return nil, fmt.Errorf("%s: serial lines: %w on this system", path, errors.ErrUnsupported)
}
