package coap

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"
)

// RFC 7252 section 4.8.2: how long a message id stays "in use" for
// duplicate detection.
const (
	exchangeLifetime = 247 * time.Second
	nonLifetime      = 145 * time.Second
	dedupShards      = 16
)

// exchangeKey names one message of one peer (RFC 7252 section 4.5).
type exchangeKey struct {
	peer netip.AddrPort
	mid  uint16
}

// exchange is one remembered request and, once answered, what the answer
// was, so a retransmission gets the same answer rebuilt without a second
// delivery.
type exchange struct {
	key      exchangeKey
	expires  int64 // unix nanoseconds
	answered bool
	code     uint8
	maxAge1  bool
	reason   string
}

// claimResult says what to do with a request.
type claimResult uint8

const (
	claimNew      claimResult = iota // first copy: handle it
	claimPending                     // a copy is being handled: drop this one
	claimAnswered                    // answered before: resend that answer
)

// exchangeCache is the duplicate-detection cache of the fast path. Each
// shard keeps its entries in a ring in arrival order plus a map from key
// to ring position, so inserting, finding and expiring are O(1) per
// datagram (the oldest entries leave first, either when their lifetime
// ends or when the ring is full).
type exchangeCache struct {
	seed   maphash.Seed
	shards [dedupShards]dedupShard
}

type dedupShard struct {
	mu    sync.Mutex
	index map[exchangeKey]uint64 // key -> sequence number
	ring  []exchange             // grows up to limit, then wraps
	limit int
	first uint64 // sequence number of the oldest entry
	next  uint64 // sequence number of the next entry
}

// newExchangeCache keeps up to entries exchanges (at least one per shard).
func newExchangeCache(entries int) *exchangeCache {
	c := &exchangeCache{seed: maphash.MakeSeed()}
	per := max(1, entries/dedupShards)
	for i := range c.shards {
		c.shards[i].index = make(map[exchangeKey]uint64)
		c.shards[i].limit = per
	}
	return c
}

func (c *exchangeCache) shard(k exchangeKey) *dedupShard {
	return &c.shards[maphash.Comparable(c.seed, k)%dedupShards]
}

// claim looks k up. For a new key it records a pending exchange that
// lives for lifetime and returns claimNew with its sequence number; for a
// known key it returns the state and, if answered, a copy of the answer.
func (c *exchangeCache) claim(k exchangeKey, now time.Time, lifetime time.Duration) (claimResult, uint64, exchange) {
	s := c.shard(k)
	nowNs := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq, ok := s.index[k]; ok {
		e := &s.ring[seq%uint64(s.limit)]
		if e.expires > nowNs {
			if e.answered {
				return claimAnswered, seq, *e
			}
			return claimPending, seq, exchange{}
		}
	}
	s.expire(nowNs)
	if int(s.next-s.first) == s.limit {
		s.evictOldest()
	}
	seq := s.next
	s.next++
	e := exchange{key: k, expires: nowNs + int64(lifetime)}
	slot := int(seq % uint64(s.limit))
	if slot == len(s.ring) {
		s.ring = append(s.ring, e)
	} else {
		s.ring[slot] = e
	}
	s.index[k] = seq
	return claimNew, seq, exchange{}
}

// answer records the answer to the exchange claimed as seq, unless it has
// already left the cache.
func (c *exchangeCache) answer(k exchangeKey, seq uint64, code uint8, maxAge1 bool, reason string) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.index[k]; !ok || cur != seq {
		return
	}
	e := &s.ring[seq%uint64(s.limit)]
	e.answered, e.code, e.maxAge1, e.reason = true, code, maxAge1, reason
}

// forget drops the exchange claimed as seq (its request was not handled,
// so a retransmission must be handled afresh).
func (c *exchangeCache) forget(k exchangeKey, seq uint64) {
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.index[k]; ok && cur == seq {
		delete(s.index, k)
		s.ring[seq%uint64(s.limit)].expires = 0
	}
}

// len returns how many exchanges are remembered.
func (c *exchangeCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.index)
		s.mu.Unlock()
	}
	return n
}

// expire drops entries from the old end whose lifetime has ended. Entries
// are in arrival order and lifetimes differ only by type (CON/NON), so
// stopping at the first live entry leaves at most a few stale ones, which
// the ring limit bounds.
func (s *dedupShard) expire(nowNs int64) {
	for s.first != s.next && s.ring[s.first%uint64(s.limit)].expires <= nowNs {
		s.evictOldest()
	}
}

func (s *dedupShard) evictOldest() {
	e := &s.ring[s.first%uint64(s.limit)]
	if cur, ok := s.index[e.key]; ok && cur == s.first {
		delete(s.index, e.key)
	}
	e.reason = ""
	s.first++
}
