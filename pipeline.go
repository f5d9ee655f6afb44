package gateway

import (
	"context"
	"sync"
	"time"
)

// DefaultInflightWindow is the in-flight window connectors use when none
// is configured: how many frames one session (an MQTT connection, a
// connector's HTTP or CoAP requests) hands over before the first of them
// is accepted.
const DefaultInflightWindow = 64

// Pipeline hands frames to an Uplink without waiting for each one to be
// accepted. Submit queues a frame with a completion and returns; the
// pipeline's goroutine delivers what is queued in batches (DeliverBatch,
// so in edge mode one group commit per batch, however many frames) and
// calls each completion with its frame's outcome, one at a time and in
// the order of the Submit calls. A connector acknowledges a message in
// its completion, when the outcome is nil: nothing is acknowledged before
// it is accepted, and acknowledgements go out in the order the messages
// arrived.
//
// At most window frames are queued or being delivered at a time; Submit
// waits for room, which is how a slow pipeline (a Store that cannot keep
// up, a full queue under the Block policy) holds back the connector.
type Pipeline struct {
	up      Uplink
	window  int
	timeout time.Duration
	q       chan pipeItem
	sem     chan struct{}
	done    chan struct{}

	mu     sync.RWMutex // held for reading by Submit; Close takes it to close q
	closed bool
}

type pipeItem struct {
	f     *Frame
	check bool
	done  func(error)
}

// NewPipeline starts a pipeline delivering to up, with at most window
// frames in flight (DefaultInflightWindow when window <= 0), each batch
// bounded by timeout (as a connector's deliver timeout bounds Deliver; no
// bound when 0). Close stops it.
func NewPipeline(up Uplink, window int, timeout time.Duration) *Pipeline {
	if window <= 0 {
		window = DefaultInflightWindow
	}
	p := &Pipeline{
		up: up, window: window, timeout: timeout,
		q:    make(chan pipeItem, window),
		sem:  make(chan struct{}, window),
		done: make(chan struct{}),
	}
	go p.run()
	return p
}

// Window returns the pipeline's in-flight window.
func (p *Pipeline) Window() int { return p.window }

// InFlight returns how many submitted frames have not had their
// completion called yet.
func (p *Pipeline) InFlight() int { return len(p.sem) }

// Submit queues f for delivery, taking ownership of it, and returns
// without waiting for the outcome; done is called with it later, on the
// pipeline's goroutine, after the completions of every frame submitted
// before. check decodes f before it is accepted (see DeliverChecked).
// Submit waits while the window is full; when ctx ends first or the
// pipeline is closed it releases f and returns an error (ctx.Err() or
// ErrClosed), and done is not called. done must not call Submit on the
// same pipeline while the window may be full.
func (p *Pipeline) Submit(ctx context.Context, f *Frame, check bool, done func(error)) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		f.Release()
		return ErrClosed
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		f.Release()
		return ctx.Err()
	}
	p.q <- pipeItem{f: f, check: check, done: done} // room: the semaphore holds its place
	return nil
}

var errChans = sync.Pool{New: func() any { return make(chan error, 1) }}

// Deliver submits f and waits for its outcome: for a caller that answers
// one request at a time (an HTTP or CoAP handler) while other callers'
// frames share its batch.
func (p *Pipeline) Deliver(ctx context.Context, f *Frame, check bool) error {
	ch := errChans.Get().(chan error)
	if err := p.Submit(ctx, f, check, func(err error) { ch <- err }); err != nil {
		errChans.Put(ch)
		return err
	}
	err := <-ch
	errChans.Put(ch)
	return err
}

// Close delivers what was submitted, calls the last completions and stops
// the pipeline's goroutine. Submit returns ErrClosed afterwards. Close is
// idempotent.
func (p *Pipeline) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.q)
	}
	p.mu.Unlock()
	<-p.done
}

func (p *Pipeline) run() {
	defer close(p.done)
	items := make([]pipeItem, 0, p.window)
	ds := make([]Delivery, 0, p.window)
	for it := range p.q {
		items = append(items[:0], it)
	gather:
		for len(items) < p.window {
			select {
			case it, ok := <-p.q:
				if !ok {
					break gather
				}
				items = append(items, it)
			default:
				break gather
			}
		}
		ds = ds[:0]
		for _, it := range items {
			ds = append(ds, Delivery{Frame: it.f, Check: it.check})
		}
		ctx, cancel := context.Background(), context.CancelFunc(func() {})
		if p.timeout > 0 {
			ctx, cancel = context.WithTimeout(ctx, p.timeout)
		}
		DeliverBatch(ctx, p.up, ds)
		cancel()
		for i := range items {
			items[i].done(ds[i].Err)
			items[i] = pipeItem{}
			<-p.sem
		}
		clear(ds)
	}
}
