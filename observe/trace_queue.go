package observe

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// boundedProcessor is a span processor with a bounded queue: a span that
// finds it full is dropped and counted, never silently. A goroutine sends
// batches to the exporter when one is full or the interval passed.
type boundedProcessor struct {
	exp      sdktrace.SpanExporter
	max      int
	batch    int
	interval time.Duration
	timeout  time.Duration

	mu     sync.Mutex
	buf    []sdktrace.ReadOnlySpan
	closed bool
	kick   chan struct{}
	ctl    flushCtl

	exported, dropped, failed atomic.Uint64
}

func newBoundedProcessor(exp sdktrace.SpanExporter, max, batch int, interval, timeout time.Duration) *boundedProcessor {
	p := &boundedProcessor{
		exp: exp, max: max, batch: batch, interval: interval, timeout: timeout,
		kick: make(chan struct{}, 1), ctl: newFlushCtl(),
	}
	go p.loop()
	return p
}

func (p *boundedProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

func (p *boundedProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	p.mu.Lock()
	if p.closed || len(p.buf) >= p.max || p.exp == nil {
		p.mu.Unlock()
		p.dropped.Add(1)
		return
	}
	p.buf = append(p.buf, s)
	full := len(p.buf) >= p.batch
	p.mu.Unlock()
	if full {
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

func (p *boundedProcessor) loop() {
	defer close(p.ctl.done)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-p.kick:
			p.export(false)
		case <-t.C:
			p.export(true)
		case ack := <-p.ctl.flushes:
			p.export(true)
			if ack == nil { // shutdown
				return
			}
			close(ack)
		}
	}
}

// export sends full batches (and, with all, what is left).
func (p *boundedProcessor) export(all bool) {
	for {
		p.mu.Lock()
		n := len(p.buf)
		if n == 0 || n < p.batch && !all {
			p.mu.Unlock()
			return
		}
		if n > p.batch {
			n = p.batch
		}
		b := make([]sdktrace.ReadOnlySpan, n)
		copy(b, p.buf)
		p.buf = append(p.buf[:0], p.buf[n:]...)
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		err := p.exp.ExportSpans(ctx, b)
		cancel()
		if err != nil {
			p.failed.Add(1)
			p.dropped.Add(uint64(n))
		} else {
			p.exported.Add(uint64(n))
		}
	}
}

func (p *boundedProcessor) ForceFlush(ctx context.Context) error { return p.ctl.flush(ctx) }

func (p *boundedProcessor) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	if err := p.ctl.stop(ctx); err != nil {
		return err
	}
	if p.exp == nil {
		return nil
	}
	return p.exp.Shutdown(ctx)
}

func (p *boundedProcessor) stats() TraceExportStats {
	p.mu.Lock()
	q := len(p.buf)
	p.mu.Unlock()
	return TraceExportStats{Queued: q, Exported: p.exported.Load(), Dropped: p.dropped.Load(), Failed: p.failed.Load()}
}
