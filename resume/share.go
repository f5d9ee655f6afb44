package resume

import (
	"context"
	"sync"

	"github.com/iotgw/gateway"
)

// UplinkShare lets live traffic and the backlog drain share one upstream
// sink in a configured ratio. When both have a batch waiting, Live gets
// LiveWeight turns for every BacklogWeight turns of Backlog; when only one
// waits, it gets every turn, so neither starves and the uplink never idles
// while work waits.
//
//	share := resume.NewUplinkShare(mqttSink, 3, 1, 1)
//	gateway.WithSink("cloud", share.Live())
//	resume.DrainerConfig{Sink: share.Backlog(), ...}
type UplinkShare struct {
	sink    gateway.Sink
	weights [2]int
	slots   int

	mu     sync.Mutex
	busy   int
	queue  [2][]chan struct{}
	served [2]int // turns taken in the current round
	turns  [2]uint64
}

const (
	classLive    = 0
	classBacklog = 1
)

// NewUplinkShare wraps sink. live and backlog are the weights (default 3
// and 1 when <= 0); concurrent bounds the publishes in flight on sink
// across both (default 1: one batch at a time, as an MQTT QoS 1 sink waits
// for its acks).
func NewUplinkShare(sink gateway.Sink, live, backlog, concurrent int) *UplinkShare {
	if live <= 0 {
		live = 3
	}
	if backlog <= 0 {
		backlog = 1
	}
	if concurrent <= 0 {
		concurrent = 1
	}
	return &UplinkShare{sink: sink, weights: [2]int{live, backlog}, slots: concurrent}
}

// Live is the sink view for live traffic.
func (u *UplinkShare) Live() gateway.Sink { return shareView{u, classLive, u.sink} }

// Backlog is the sink view for the drain.
func (u *UplinkShare) Backlog() gateway.Sink { return shareView{u, classBacklog, u.sink} }

// Turns returns how many publishes live traffic and backlog have made.
func (u *UplinkShare) Turns() (live, backlog uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.turns[classLive], u.turns[classBacklog]
}

type shareView struct {
	u     *UplinkShare
	class int
	sink  gateway.Sink // where the turn publishes; the gateway's live and backlog paths differ
}

func (v shareView) Publish(ctx context.Context, msgs []*gateway.Message) error {
	if err := v.u.acquire(ctx, v.class); err != nil {
		return err
	}
	defer v.u.release()
	return v.sink.Publish(ctx, msgs)
}

func (u *UplinkShare) acquire(ctx context.Context, class int) error {
	ch := make(chan struct{}, 1)
	u.mu.Lock()
	u.queue[class] = append(u.queue[class], ch)
	u.grantLocked()
	u.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		u.mu.Lock()
		defer u.mu.Unlock()
		for i, c := range u.queue[class] {
			if c == ch {
				u.queue[class] = append(u.queue[class][:i], u.queue[class][i+1:]...)
				return ctx.Err()
			}
		}
		// Granted meanwhile: give the turn back.
		u.busy--
		u.grantLocked()
		return ctx.Err()
	}
}

func (u *UplinkShare) release() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.busy--
	u.grantLocked()
}

// grantLocked hands free slots to waiters by weighted round robin.
func (u *UplinkShare) grantLocked() {
	for u.busy < u.slots {
		live, backlog := len(u.queue[classLive]) > 0, len(u.queue[classBacklog]) > 0
		var c int
		switch {
		case live && backlog:
			if u.served[classLive] >= u.weights[classLive] && u.served[classBacklog] >= u.weights[classBacklog] {
				u.served = [2]int{}
			}
			c = classLive
			if u.served[classLive] >= u.weights[classLive] {
				c = classBacklog
			}
		case live:
			c = classLive
		case backlog:
			c = classBacklog
		default:
			return
		}
		ch := u.queue[c][0]
		u.queue[c] = u.queue[c][1:]
		u.served[c]++
		u.turns[c]++
		u.busy++
		ch <- struct{}{}
	}
}
