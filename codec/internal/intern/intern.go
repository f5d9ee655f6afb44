// Package intern turns short byte strings that repeat from frame to frame
// (JSON keys, fixed-width device strings) into shared Go strings, so a
// codec can decode them without allocating once it has seen them.
package intern

import (
	"sync"
	"sync/atomic"
)

// DefaultLimit is the number of distinct strings a Table keeps when New is
// given zero.
const DefaultLimit = 4096

// maxLen keeps one long value from pinning memory in the table.
const maxLen = 128

// Table is a bounded, concurrency-safe string table. The zero value is not
// usable; call New. Lookups read an immutable snapshot through one atomic
// load, so concurrent decoders never contend; adding a string copies the
// snapshot, which is cheap because tables are small and fill once. Once
// full, new strings are still returned correctly but allocated per call:
// a device that sends endless distinct strings costs allocations, never
// unbounded memory.
type Table struct {
	snap  atomic.Pointer[map[string]string]
	mu    sync.Mutex // serialises writers
	limit int
}

// New returns a table that keeps up to limit strings (DefaultLimit if
// limit <= 0).
func New(limit int) *Table {
	if limit <= 0 {
		limit = DefaultLimit
	}
	t := &Table{limit: limit}
	m := map[string]string{}
	t.snap.Store(&m)
	return t
}

// Bytes returns a string equal to b. It does not allocate when the string
// is already in the table.
func (t *Table) Bytes(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := (*t.snap.Load())[string(b)]; ok { // converted key: no allocation
		return s
	}
	s := string(b)
	if len(b) > maxLen {
		return s
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.snap.Load()
	if prev, ok := old[s]; ok {
		return prev
	}
	if len(old) >= t.limit {
		return s
	}
	m := make(map[string]string, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[s] = s
	t.snap.Store(&m)
	return s
}

// Len reports how many strings the table holds.
func (t *Table) Len() int { return len(*t.snap.Load()) }
