package modbus

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// bauds are the standard rates termios can set.
var bauds = map[int]uint32{
	1200: unix.B1200, 2400: unix.B2400, 4800: unix.B4800, 9600: unix.B9600,
	19200: unix.B19200, 38400: unix.B38400, 57600: unix.B57600, 115200: unix.B115200,
	230400: unix.B230400, 460800: unix.B460800, 500000: unix.B500000, 576000: unix.B576000,
	921600: unix.B921600, 1000000: unix.B1000000, 1152000: unix.B1152000, 1500000: unix.B1500000,
	2000000: unix.B2000000, 2500000: unix.B2500000, 3000000: unix.B3000000, 3500000: unix.B3500000,
	4000000: unix.B4000000,
}

func checkBaud(b int) error {
	if _, ok := bauds[b]; !ok {
		return fmt.Errorf("baud %d: not a standard rate (1200, 2400, ... 19200, 38400, 57600, 115200, ... 4000000)", b)
	}
	return nil
}

// serialPort is a serial line in raw mode. The file is non-blocking and
// registered with the runtime poller, so read deadlines work.
type serialPort struct{ *os.File }

// openSerial opens path in raw mode, 8 data bits, with s's rate, parity
// and stop bits, no flow control, and the modem lines ignored (CLOCAL).
func openSerial(path string, s Serial) (rtuPort, error) {
	speed, ok := bauds[s.Baud]
	if !ok {
		return nil, checkBaud(s.Baud)
	}
	f, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	var terr error
	err = rc.Control(func(fd uintptr) {
		t, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if err != nil {
			terr = fmt.Errorf("%s: not a serial line: %w", path, err)
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR |
			unix.ICRNL | unix.IXON | unix.IXOFF | unix.IXANY | unix.INPCK
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB | unix.PARODD | unix.CSTOPB | unix.CBAUD | unix.CRTSCTS
		t.Cflag |= unix.CS8 | unix.CREAD | unix.CLOCAL | speed
		switch s.Parity {
		case ParityEven:
			t.Cflag |= unix.PARENB
		case ParityOdd:
			t.Cflag |= unix.PARENB | unix.PARODD
		}
		if s.StopBits == 2 {
			t.Cflag |= unix.CSTOPB
		}
		t.Ispeed, t.Ospeed = speed, speed
		t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
		if err := unix.IoctlSetTermios(int(fd), unix.TCSETS, t); err != nil {
			terr = fmt.Errorf("%s: set line: %w", path, err)
		}
	})
	if err == nil {
		err = terr
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return serialPort{f}, nil
}

func (p serialPort) discardInput() error {
	rc, err := p.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = unix.IoctlSetInt(int(fd), unix.TCFLSH, unix.TCIFLUSH) }); err != nil {
		return err
	}
	return ferr
}
