// Package waitctx waits for a group of goroutines within a context, as a
// component's Disconnect does:
//
//	cancel() // tell the goroutines to end
//	if err := waitctx.Wait(ctx, &c.wg); err != nil {
//		return fmt.Errorf("x: disconnect: %w", err)
//	}
package waitctx

import (
	"context"
	"sync"
)

// Wait returns nil once wg's counter is zero, or ctx's error if ctx ends
// first. In that case a helper goroutine stays until wg is done.
func Wait(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
