package mqtt

import (
	"runtime"
	"sync"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/iotgw/gateway/internal/mqttwire"
)

// workers process the packets a session goroutine has read, so that
// session goroutines never run the deep part (decoding, the broker, the
// ACL, the Uplink's Deliver). A goroutine's stack grows to fit its
// deepest call and shrinks only at a GC, and then by half at most: a
// session goroutine that processed its own packets kept 8-16 KiB of
// stack for as long as its device published every few seconds. Handed
// off, the deep calls grow the stacks of the few workers instead, and a
// session goroutine stays at its starting size.
//
// A session hands off and waits, so its packets are processed in order,
// one batch at a time. A batch runs on an idle worker, or on a new one
// when none is idle: sessions never wait for each other, however long a
// Deliver blocks (every session can have one Deliver in flight, as
// when sessions processed their own packets). Up to 16 idle workers per
// GOMAXPROCS stay for the next batches, a few hundred KiB of stacks at
// most; the others end.
type workers struct {
	jobs chan *job       // to an idle worker
	quit <-chan struct{} // closed when the listener disconnects
	wg   *sync.WaitGroup
	idle atomic.Int32
	max  int32
}

func newWorkers(quit <-chan struct{}, wg *sync.WaitGroup) *workers {
	return &workers{jobs: make(chan *job), quit: quit, wg: wg, max: int32(16 * runtime.GOMAXPROCS(0))}
}

// job is one hand-off: process the whole packets buffered in rd.
type job struct {
	l    *Listener
	run  *listenerRun
	cl   *mochi.Client
	ss   *session
	rd   *mqttwire.Reader
	done chan error
}

var jobPool = sync.Pool{New: func() any { return &job{done: make(chan error, 1)} }}

// process processes the whole packets rd holds, on a worker, and returns
// the first error. Called by the session goroutine, which must hold a
// count of w.wg.
func (w *workers) process(l *Listener, run *listenerRun, cl *mochi.Client, ss *session, rd *mqttwire.Reader) error {
	j := jobPool.Get().(*job)
	j.l, j.run, j.cl, j.ss, j.rd = l, run, cl, ss, rd
	select {
	case w.jobs <- j:
	default:
		w.wg.Add(1)
		go w.work(j)
	}
	err := <-j.done
	*j = job{done: j.done}
	jobPool.Put(j)
	return err
}

// work runs jobs until it has been idle while enough others were, or the
// listener disconnects.
func (w *workers) work(j *job) {
	defer w.wg.Done()
	for {
		j.done <- j.l.handleBuffered(j.run, j.cl, j.ss, j.rd)
		if w.idle.Add(1) > w.max {
			w.idle.Add(-1)
			return
		}
		select {
		case j = <-w.jobs:
			w.idle.Add(-1)
		case <-w.quit:
			w.idle.Add(-1)
			return
		}
	}
}
