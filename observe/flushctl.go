package observe

import "context"

// flushCtl is the handshake between an export queue's callers and its
// loop goroutine: a flush request carries a channel the loop closes once
// it has exported what was queued; a nil request tells the loop to export
// and return, and the loop closes done when it does.
type flushCtl struct {
	flushes chan chan struct{}
	done    chan struct{}
}

func newFlushCtl() flushCtl {
	return flushCtl{flushes: make(chan chan struct{}), done: make(chan struct{})}
}

// flush waits until the loop has exported what was queued before the call.
func (c flushCtl) flush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case c.flushes <- ack:
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-ack:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop has the loop export what is queued and return, and waits for it.
func (c flushCtl) stop(ctx context.Context) error {
	select {
	case c.flushes <- nil:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
