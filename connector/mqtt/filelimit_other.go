//go:build !linux

package mqtt

import "errors"

// The file limit check is Linux only.

func osFileLimit() (soft, hard uint64, ok bool) { return 0, 0, false }

func osSetFileLimit(soft, hard uint64) error { return errors.ErrUnsupported }
