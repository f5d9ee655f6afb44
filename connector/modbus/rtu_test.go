package modbus

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCRC16KnownFrames(t *testing.T) {
	// Read 10 holding registers from 0 on unit 1: the CRC bytes C5 CD
	// (low byte first), as printed in the Modbus serial line guide.
	f := appendRTU(nil, 1, []byte{3, 0, 0, 0, 10})
	if got := f[len(f)-2:]; got[0] != 0xc5 || got[1] != 0xcd {
		t.Fatalf("frame % x: CRC bytes % x, want c5 cd", f, got)
	}
}

func rtuReply(unit byte, pdu ...byte) []byte { return appendRTU(nil, unit, pdu) }

func TestDecodeRTUResponse(t *testing.T) {
	good := rtuReply(1, 3, 4, 0x03, 0xe8, 0x03, 0xe9)
	bad := append([]byte(nil), good...)
	bad[3] ^= 0x10
	tests := []struct {
		name  string
		frame []byte
		unit  byte
		fc    byte
		want  []byte
		err   error
	}{
		{"registers", good, 1, 3, []byte{3, 4, 0x03, 0xe8, 0x03, 0xe9}, nil},
		{"crc", bad, 1, 3, nil, ErrCRC},
		{"crc is malformed", bad, 1, 3, nil, ErrMalformedResponse},
		{"other unit", good, 2, 3, nil, ErrMalformedResponse},
		{"other function", good, 1, 4, nil, ErrMalformedResponse},
		{"exception", rtuReply(1, 0x83, 2), 1, 3, nil, ErrIllegalDataAddress},
		{"busy", rtuReply(5, 0x90, 6), 5, 16, nil, ErrServerDeviceBusy},
		{"short", good[:4], 1, 3, nil, ErrMalformedResponse},
		{"long", append(append([]byte(nil), good...), 0), 1, 3, nil, ErrMalformedResponse},
		{"write echo", rtuReply(1, 6, 0, 1, 0, 2), 1, 6, []byte{6, 0, 1, 0, 2}, nil},
	}
	for _, tt := range tests {
		got, err := DecodeRTUResponse(tt.frame, tt.unit, tt.fc)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%s: err = %v, want %v", tt.name, err, tt.err)
			}
			continue
		}
		if err != nil || string(got) != string(tt.want) {
			t.Errorf("%s: got % x, %v; want % x", tt.name, got, err, tt.want)
		}
	}
}

func FuzzDecodeRTUResponse(f *testing.F) {
	f.Add(rtuReply(1, 3, 4, 0x03, 0xe8, 0x03, 0xe9), byte(1), byte(3))
	f.Add(rtuReply(1, 0x83, 2), byte(1), byte(3))
	f.Add(rtuReply(7, 1, 1, 0x49), byte(7), byte(1))
	f.Add(rtuReply(7, 15, 0, 1, 0, 8), byte(7), byte(15))
	f.Add([]byte{1, 3, 200}, byte(1), byte(3))
	f.Fuzz(func(t *testing.T, frame []byte, unit, fc byte) {
		n, lerr := rtuResponseLen(frame, fc)
		pdu, err := DecodeRTUResponse(frame, unit, fc)
		if err != nil {
			if !errors.Is(err, ErrMalformedResponse) && exceptionCode(err) == 0 && !isUnknownException(err) {
				t.Fatalf("error %v is neither malformed nor an exception", err)
			}
			return
		}
		// An accepted frame is exactly one frame of the asked unit and
		// function with a valid CRC, and re-encodes to itself.
		if lerr != nil || n != len(frame) || frame[0] != unit || pdu[0] != fc {
			t.Fatalf("accepted % x (len %d, want %d, err %v)", frame, len(frame), n, lerr)
		}
		if again := appendRTU(nil, unit, pdu); string(again) != string(frame) {
			t.Fatalf("re-encoded % x, got % x", again, frame)
		}
		if crc := binary.LittleEndian.Uint16(frame[len(frame)-2:]); crc != crc16(frame[:len(frame)-2]) {
			t.Fatal("bad CRC accepted")
		}
	})
}

func isUnknownException(err error) bool { return strings.HasPrefix(err.Error(), "modbus: exception ") }

func TestSerialTimings(t *testing.T) {
	s := Serial{Baud: 9600}.withDefaults() // 8E1: 11 bits per character
	if got, want := s.charTime(), 11*time.Second/9600; got != want {
		t.Errorf("char time %v, want %v", got, want)
	}
	if got := s.silence(); got < 4*time.Millisecond || got > 4100*time.Microsecond {
		t.Errorf("t3.5 at 9600 baud = %v, want ~4.01ms", got)
	}
	if got := (Serial{Baud: 115200}).withDefaults().silence(); got != 1750*time.Microsecond {
		t.Errorf("t3.5 above 19200 baud = %v, want the fixed 1.75ms", got)
	}
}
