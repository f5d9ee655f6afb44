package dtlsx

import (
	"container/list"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/dtls/v3"
)

// ErrNotFound is returned by a PersistentStore that holds no live record
// for a session id.
var ErrNotFound = errors.New("dtlsx: session not found")

// ErrClosed is returned by operations on a closed SessionCache or Listener.
var ErrClosed = errors.New("dtlsx: closed")

// SealedSession is a persisted session as a PersistentStore sees it: the
// session itself is opaque (AES-GCM under the KeyRing key KeyID). The
// identity is kept in the clear so revocation works without the keys.
type SealedSession struct {
	ID       []byte
	Identity string
	KeyID    uint32
	Sealed   []byte
	Expires  time.Time
}

// PersistentStore keeps sealed sessions across restarts and gateway
// instances. SQLiteStore is the reference; any shared database works.
// Implementations must be safe for concurrent use.
type PersistentStore interface {
	// LoadSession returns the record for id, or ErrNotFound.
	LoadSession(ctx context.Context, id []byte) (SealedSession, error)
	// SaveSessions inserts or replaces records in one transaction.
	SaveSessions(ctx context.Context, recs []SealedSession) error
	// DeleteSessions removes records by id; missing ids are not an error.
	DeleteSessions(ctx context.Context, ids [][]byte) error
	// DeleteIdentity removes every record of identity and returns how many.
	DeleteIdentity(ctx context.Context, identity string) (int, error)
}

// CacheStats counts what a SessionCache did. Store failures show up here
// (and in the log) instead of failing handshakes.
type CacheStats struct {
	MemoryHits, MemoryMisses uint64
	StoreHits, StoreMisses   uint64
	StoreErrors              uint64 // load/save/delete failed or timed out
	OpenErrors               uint64 // record failed to open (retired key, tampering)
	WriteQueueDrops          uint64 // persistence queue full; session kept in memory only
	Stored, Evicted, Expired uint64
	Revoked                  uint64 // sessions dropped by Revoke or a changed PSK
}

type cacheCounters struct {
	memHits, memMisses, storeHits, storeMisses, storeErrors, openErrors atomic.Uint64
	writeDrops, stored, evicted, expired, revoked                       atomic.Uint64
}

// CacheOption configures a SessionCache.
type CacheOption func(*SessionCache) error

// WithCapacity bounds the in-memory LRU (default 10,000 sessions, about
// 1 KiB each with a certificate chain). The least recently used session is
// evicted first; it stays available from the persistent store.
func WithCapacity(n int) CacheOption {
	return func(c *SessionCache) error {
		if n <= 0 {
			return fmt.Errorf("dtlsx: capacity %d: must be positive", n)
		}
		c.capacity = n
		return nil
	}
}

// WithTTL sets how long a session stays resumable after its full handshake
// (default 24h). Shorter limits the damage of a leaked master secret;
// longer saves more full handshakes after outages.
func WithTTL(d time.Duration) CacheOption {
	return func(c *SessionCache) error {
		if d <= 0 {
			return fmt.Errorf("dtlsx: ttl %v: must be positive", d)
		}
		c.ttl = d
		return nil
	}
}

// WithPersistentStore shares sessions through store, sealed under ring
// (default: memory only). Writes are batched in the background so a slow
// store never delays a handshake; reads on a memory miss wait at most the
// store timeout.
func WithPersistentStore(store PersistentStore, ring *KeyRing) CacheOption {
	return func(c *SessionCache) error {
		if store == nil || ring == nil {
			return errors.New("dtlsx: persistent store needs both a store and a key ring")
		}
		c.store, c.ring = store, ring
		return nil
	}
}

// WithStoreTimeout bounds each persistent-store call (default 200ms). A
// load that times out is a cache miss: the device gets a full handshake.
func WithStoreTimeout(d time.Duration) CacheOption {
	return func(c *SessionCache) error {
		if d <= 0 {
			return fmt.Errorf("dtlsx: store timeout %v: must be positive", d)
		}
		c.storeTimeout = d
		return nil
	}
}

// WithSessionPSK lets the cache drop a server-side PSK session whose
// identity's key changed or was removed since the session was made (default:
// none; pion re-checks the key anyway). The comparison is constant-time.
func WithSessionPSK(p PSKProvider) CacheOption {
	return func(c *SessionCache) error {
		c.psk = p
		return nil
	}
}

// WithCacheLogger sets where store failures are logged (default slog.Default()).
func WithCacheLogger(l *slog.Logger) CacheOption {
	return func(c *SessionCache) error {
		if l == nil {
			return errors.New("dtlsx: nil logger")
		}
		c.log = l
		return nil
	}
}

type cacheEntry struct {
	key      string
	session  dtls.Session
	identity string
	expires  time.Time
}

type writeOp struct {
	rec    SealedSession // save when rec.ID != nil
	delete []byte
}

// SessionCache is the resumable-session cache: an LRU with TTL in memory in
// front of an optional sealed PersistentStore. It implements
// dtls.SessionStore and never returns an error to pion: a failing store is a
// miss, counted in Stats and logged, so the device gets a full handshake
// rather than an aborted one. Safe for concurrent use; share one between
// listeners. Close flushes pending writes.
type SessionCache struct {
	capacity     int
	ttl          time.Duration
	storeTimeout time.Duration
	store        PersistentStore
	ring         *KeyRing
	psk          PSKProvider
	log          *slog.Logger
	now          func() time.Time

	mu    sync.Mutex
	lru   *list.List // front = most recent; values *cacheEntry
	index map[string]*list.Element

	counters cacheCounters

	writes    chan writeOp
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup
}

var _ dtls.SessionStore = (*SessionCache)(nil)

// NewSessionCache builds a cache. With a persistent store it starts one
// writer goroutine that Close stops.
func NewSessionCache(opts ...CacheOption) (*SessionCache, error) {
	c := &SessionCache{
		capacity:     10000,
		ttl:          24 * time.Hour,
		storeTimeout: 200 * time.Millisecond,
		log:          slog.Default(),
		now:          time.Now,
		lru:          list.New(),
		index:        make(map[string]*list.Element),
		closing:      make(chan struct{}),
	}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	if c.store != nil {
		c.writes = make(chan writeOp, 4096)
		c.wg.Add(1)
		go c.writeBehind()
	}
	return c, nil
}

// Stats returns a snapshot of the counters.
func (c *SessionCache) Stats() CacheStats {
	k := &c.counters
	return CacheStats{
		MemoryHits: k.memHits.Load(), MemoryMisses: k.memMisses.Load(),
		StoreHits: k.storeHits.Load(), StoreMisses: k.storeMisses.Load(),
		StoreErrors: k.storeErrors.Load(), OpenErrors: k.openErrors.Load(),
		WriteQueueDrops: k.writeDrops.Load(), Stored: k.stored.Load(),
		Evicted: k.evicted.Load(), Expired: k.expired.Load(), Revoked: k.revoked.Load(),
	}
}

// Len returns the number of sessions held in memory.
func (c *SessionCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// SessionIdentity names who a session belongs to, the key Revoke takes:
// "psk:<identity>" for PSK sessions, "cert:<hex sha-256 of the peer's leaf
// certificate>" for certificate sessions with a peer certificate, and ""
// for anonymous clients.
func SessionIdentity(s *dtls.Session) string {
	switch {
	case len(s.IdentityHint) > 0:
		return "psk:" + string(s.IdentityHint)
	case len(s.PeerCertificates) > 0:
		sum := sha256.Sum256(s.PeerCertificates[0])
		return "cert:" + hex.EncodeToString(sum[:])
	}
	return ""
}

// Set stores a session under key (pion: session id on servers, server
// name on clients). It never fails.
func (c *SessionCache) Set(key []byte, s dtls.Session) error {
	e := &cacheEntry{key: string(key), session: s, identity: SessionIdentity(&s), expires: c.now().Add(c.ttl)}
	c.put(e)
	c.counters.stored.Add(1)
	if c.store != nil {
		c.persist(e)
	}
	return nil
}

// Get returns the session for key, or a zero Session (a miss) when it is
// absent, expired, revoked or unreadable. It never fails.
func (c *SessionCache) Get(key []byte) (dtls.Session, error) {
	s, _ := c.lookup(key)
	return s, nil
}

// Del forgets key in memory and in the store.
func (c *SessionCache) Del(key []byte) error {
	c.mu.Lock()
	if el, ok := c.index[string(key)]; ok {
		c.removeLocked(el)
	}
	c.mu.Unlock()
	if c.store != nil {
		c.enqueue(writeOp{delete: clone(key)})
	}
	return nil
}

// Revoke drops every session of identity (see SessionIdentity) from memory
// and from the persistent store, and returns how many were dropped.
func (c *SessionCache) Revoke(ctx context.Context, identity string) (int, error) {
	n := 0
	c.mu.Lock()
	for el := c.lru.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*cacheEntry).identity == identity {
			c.removeLocked(el)
			n++
		}
		el = next
	}
	c.mu.Unlock()
	if c.store != nil {
		m, err := c.store.DeleteIdentity(ctx, identity)
		if err != nil {
			c.counters.revoked.Add(uint64(n))
			return n, fmt.Errorf("dtlsx: revoke %q in store: %w", identity, err)
		}
		if m > n {
			n = m
		}
	}
	c.counters.revoked.Add(uint64(n))
	return n, nil
}

// Close flushes queued writes to the persistent store and stops the writer.
// The memory cache keeps answering; later writes stay in memory.
func (c *SessionCache) Close() error {
	c.closeOnce.Do(func() { close(c.closing) })
	c.wg.Wait()
	return nil
}

// lookup reports where the session came from: 1 memory, 2 store, 0 miss.
func (c *SessionCache) lookup(key []byte) (dtls.Session, int) {
	if len(key) == 0 {
		return dtls.Session{}, 0
	}
	now := c.now()
	c.mu.Lock()
	if el, ok := c.index[string(key)]; ok {
		e := el.Value.(*cacheEntry)
		if now.Before(e.expires) {
			c.lru.MoveToFront(el)
			s := e.session
			c.mu.Unlock()
			if !c.pskStillValid(key, &s) {
				return dtls.Session{}, 0
			}
			c.counters.memHits.Add(1)
			return s, 1
		}
		c.removeLocked(el)
		c.counters.expired.Add(1)
	}
	c.mu.Unlock()
	c.counters.memMisses.Add(1)
	if c.store == nil {
		return dtls.Session{}, 0
	}
	e, err := c.load(key, now)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			c.counters.storeMisses.Add(1)
		} else {
			c.log.Warn("dtlsx: session store load failed; full handshake instead", "err", err)
		}
		return dtls.Session{}, 0
	}
	if !c.pskStillValid(key, &e.session) {
		return dtls.Session{}, 0
	}
	c.counters.storeHits.Add(1)
	c.put(e)
	return e.session, 2
}

// load fetches, opens and checks one record. Failures other than
// ErrNotFound are counted here.
func (c *SessionCache) load(key []byte, now time.Time) (*cacheEntry, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.storeTimeout)
	defer cancel()
	rec, err := c.store.LoadSession(ctx, key)
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			c.counters.storeErrors.Add(1)
		}
		return nil, err
	}
	if !now.Before(rec.Expires) {
		c.counters.expired.Add(1)
		return nil, fmt.Errorf("session %x expired at %v: %w", key, rec.Expires, ErrNotFound)
	}
	pt, err := c.ring.open(rec.KeyID, rec.Sealed, sealAAD(rec.ID, rec.Identity, rec.Expires))
	if err != nil {
		c.counters.openErrors.Add(1)
		return nil, fmt.Errorf("session %x: %w", key, err)
	}
	s, err := decodeSession(pt)
	clear(pt)
	if err != nil {
		c.counters.openErrors.Add(1)
		return nil, fmt.Errorf("session %x: %w", key, err)
	}
	if string(rec.ID) != string(key) || SessionIdentity(&s) != rec.Identity {
		c.counters.openErrors.Add(1)
		return nil, fmt.Errorf("session %x: record bound to another id or identity: %w", key, ErrOpen)
	}
	return &cacheEntry{key: string(key), session: s, identity: rec.Identity, expires: rec.Expires}, nil
}

// pskStillValid drops a server-side PSK session whose key changed.
func (c *SessionCache) pskStillValid(key []byte, s *dtls.Session) bool {
	if c.psk == nil || s.IsClient || len(s.IdentityHint) == 0 {
		return true
	}
	k, err := c.psk.PSK(s.IdentityHint)
	ok := err == nil
	if ok {
		sum := sha256.Sum256(k)
		ok = subtle.ConstantTimeCompare(sum[:], s.PSKHash[:]) == 1
	}
	if !ok {
		c.counters.revoked.Add(1)
		_ = c.Del(key)
	}
	return ok
}

func (c *SessionCache) put(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.index[e.key]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	c.index[e.key] = c.lru.PushFront(e)
	for c.lru.Len() > c.capacity {
		c.removeLocked(c.lru.Back())
		c.counters.evicted.Add(1)
	}
}

func (c *SessionCache) removeLocked(el *list.Element) {
	delete(c.index, el.Value.(*cacheEntry).key)
	c.lru.Remove(el)
}

// sealAAD binds a sealed record to its id, identity and expiry so rows
// cannot be swapped or extended in the store.
func sealAAD(id []byte, identity string, expires time.Time) []byte {
	aad := make([]byte, 0, 16+len(id)+len(identity)+8)
	aad = append(aad, "dtlsx-session-1"...)
	aad = append(aad, byte(len(id)))
	aad = append(aad, id...)
	aad = binary.BigEndian.AppendUint64(aad, uint64(expires.Unix()))
	return append(aad, identity...)
}

func (c *SessionCache) persist(e *cacheEntry) {
	// Whole seconds so the AAD matches what the store returns.
	expires := time.Unix(e.expires.Unix(), 0)
	pt := appendSession(make([]byte, 0, 256), &e.session)
	id, sealed, err := c.ring.seal(nil, pt, sealAAD([]byte(e.key), e.identity, expires))
	clear(pt)
	if err != nil {
		c.counters.storeErrors.Add(1)
		c.log.Warn("dtlsx: sealing session failed; kept in memory only", "err", err)
		return
	}
	c.enqueue(writeOp{rec: SealedSession{ID: []byte(e.key), Identity: e.identity, KeyID: id, Sealed: sealed, Expires: expires}})
}

func (c *SessionCache) enqueue(op writeOp) {
	select {
	case <-c.closing:
		c.counters.writeDrops.Add(1)
		return
	default:
	}
	select {
	case c.writes <- op:
	default:
		c.counters.writeDrops.Add(1)
	}
}

// writeBehind batches queued writes into store transactions.
func (c *SessionCache) writeBehind() {
	defer c.wg.Done()
	var saves []SealedSession
	var dels [][]byte
	flush := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*c.storeTimeout)
		defer cancel()
		if len(saves) > 0 {
			if err := c.store.SaveSessions(ctx, saves); err != nil {
				c.counters.storeErrors.Add(1)
				c.log.Warn("dtlsx: session store save failed; sessions kept in memory only", "n", len(saves), "err", err)
			}
		}
		if len(dels) > 0 {
			if err := c.store.DeleteSessions(ctx, dels); err != nil {
				c.counters.storeErrors.Add(1)
				c.log.Warn("dtlsx: session store delete failed", "n", len(dels), "err", err)
			}
		}
		saves, dels = saves[:0], dels[:0]
	}
	add := func(op writeOp) {
		if op.rec.ID != nil {
			saves = append(saves, op.rec)
		} else {
			dels = append(dels, op.delete)
		}
	}
	for {
		select {
		case op := <-c.writes:
			add(op)
		drain:
			for len(saves)+len(dels) < 256 {
				select {
				case op := <-c.writes:
					add(op)
				default:
					break drain
				}
			}
			flush()
		case <-c.closing:
			for {
				select {
				case op := <-c.writes:
					add(op)
					if len(saves)+len(dels) >= 256 {
						flush()
					}
				default:
					flush()
					return
				}
			}
		}
	}
}
