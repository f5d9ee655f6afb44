// Package intern turns short byte strings that repeat from frame to frame
// (JSON keys, fixed-width device strings) into shared Go strings, so a
// codec can decode them without allocating once it has seen them.
package intern

import "sync"

// DefaultLimit is the number of distinct strings a Table keeps when New is
// given zero.
const DefaultLimit = 4096

// maxLen keeps one long value from pinning memory in the table.
const maxLen = 128

// Table is a bounded, concurrency-safe string table. The zero value is not
// usable; call New. Once full, new strings are still returned correctly but
// allocated per call: a device that sends endless distinct strings costs
// allocations, never unbounded memory.
type Table struct {
	mu    sync.RWMutex
	m     map[string]string
	limit int
}

// New returns a table that keeps up to limit strings (DefaultLimit if
// limit <= 0).
func New(limit int) *Table {
	if limit <= 0 {
		limit = DefaultLimit
	}
	return &Table{m: make(map[string]string), limit: limit}
}

// Bytes returns a string equal to b. It does not allocate when the string
// is already in the table.
func (t *Table) Bytes(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	t.mu.RLock()
	s, ok := t.m[string(b)] // map lookup with a converted key does not allocate
	t.mu.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	if len(b) > maxLen {
		return s
	}
	t.mu.Lock()
	if prev, ok := t.m[s]; ok {
		s = prev
	} else if len(t.m) < t.limit {
		t.m[s] = s
	}
	t.mu.Unlock()
	return s
}

// Len reports how many strings the table holds.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}
