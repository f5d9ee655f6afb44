// Package limitread appends a bounded amount of a reader to a buffer, for
// connectors that copy device bodies into pooled frames.
package limitread

import (
	"errors"
	"io"
)

// ErrTooLarge is returned when the reader holds more than the limit.
var ErrTooLarge = errors.New("body larger than the limit")

// Append reads r to EOF, appending to dst, and fails with ErrTooLarge once
// more than max bytes arrived. It grows dst only as needed, so a pooled
// buffer of enough capacity is reused as is.
func Append(dst []byte, r io.Reader, max int64) ([]byte, error) {
	if r == nil {
		return dst, nil
	}
	start := len(dst)
	lr := io.LimitReader(r, max+1)
	for {
		if len(dst) == cap(dst) {
			dst = append(dst, 0)[:len(dst)]
		}
		n, err := lr.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if int64(len(dst)-start) > max {
			return dst, ErrTooLarge
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst, err
		}
	}
}
