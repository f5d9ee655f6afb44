//go:build !linux

package udpbatch

import "net"

// sysBatch is the batched path; this platform has none.
type sysBatch struct{ disabled bool }

func newSysBatch(*net.UDPConn, int) *sysBatch { return nil }

func (*sysBatch) read([]Message) (int, error) { return 0, errNoSys }
func (*sysBatch) write([]Message) error       { return errNoSys }
