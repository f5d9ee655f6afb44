package resume

import (
	"sync"

	"github.com/iotgw/gateway"
)

// Deduper drops repeated deliveries on the consumer side. Store-and-forward
// delivers at least once: after a crash, or when an upstream ack is lost,
// a message reaches the broker again with its original MessageID. A
// consumer that asks Deduper.First before acting sees each message once,
// as long as a repeat arrives within the last Window distinct IDs.
//
// It keeps a ring of the last Window IDs plus a set over them: memory is
// about 40 bytes per ID. Safe for concurrent use.
type Deduper struct {
	mu   sync.Mutex
	ring []gateway.MessageID
	next int
	seen map[gateway.MessageID]struct{}
	dups uint64
}

// NewDeduper remembers the last window IDs (default 65536 when window <= 0).
// Size it to cover what the gateway can replay: its store bound, or at
// least the messages of the longest outage you expect.
func NewDeduper(window int) *Deduper {
	if window <= 0 {
		window = 1 << 16
	}
	return &Deduper{ring: make([]gateway.MessageID, 0, window), seen: make(map[gateway.MessageID]struct{}, window)}
}

// First reports whether id is new (true) or a repeat to drop (false).
func (d *Deduper) First(id gateway.MessageID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.seen[id]; ok {
		d.dups++
		return false
	}
	if len(d.ring) < cap(d.ring) {
		d.ring = append(d.ring, id)
	} else {
		delete(d.seen, d.ring[d.next])
		d.ring[d.next] = id
		d.next = (d.next + 1) % len(d.ring)
	}
	d.seen[id] = struct{}{}
	return true
}

// Duplicates returns how many repeats First has dropped.
func (d *Deduper) Duplicates() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dups
}
