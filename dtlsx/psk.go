package dtlsx

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
)

// ErrUnknownIdentity is returned by a PSKProvider for an identity it does not know.
var ErrUnknownIdentity = errors.New("dtlsx: unknown PSK identity")

// PSKProvider returns the pre-shared key of a device identity (the
// psk_identity of its ClientKeyExchange). An error fails the handshake with
// a decrypt_error-class alert; the device learns nothing about why.
type PSKProvider interface {
	PSK(identity []byte) ([]byte, error)
}

// PSKFunc adapts a function to PSKProvider.
type PSKFunc func(identity []byte) ([]byte, error)

// PSK implements PSKProvider.
func (f PSKFunc) PSK(identity []byte) ([]byte, error) { return f(identity) }

// PSKTable is an in-memory PSKProvider, safe for concurrent use and
// updates. Lookups compare every stored identity in constant time per
// entry, so response timing does not tell which identities exist; it is
// meant for up to a few thousand devices (use SQLiteStore beyond).
type PSKTable struct {
	mu      sync.RWMutex
	entries []pskEntry
}

type pskEntry struct{ identity, key []byte }

var _ PSKProvider = (*PSKTable)(nil)

// Set adds or replaces identity's key.
func (t *PSKTable) Set(identity, key []byte) error {
	if len(identity) == 0 || len(key) == 0 {
		return errors.New("dtlsx: psk identity and key must not be empty")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.entries {
		if bytes.Equal(t.entries[i].identity, identity) {
			t.entries[i].key = clone(key)
			return nil
		}
	}
	t.entries = append(t.entries, pskEntry{clone(identity), clone(key)})
	return nil
}

// Delete removes identity.
func (t *PSKTable) Delete(identity []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range t.entries {
		if bytes.Equal(t.entries[i].identity, identity) {
			t.entries = append(t.entries[:i], t.entries[i+1:]...)
			return
		}
	}
}

// PSK implements PSKProvider.
func (t *PSKTable) PSK(identity []byte) ([]byte, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var found []byte
	for i := range t.entries {
		e := &t.entries[i]
		if subtle.ConstantTimeCompare(e.identity, identity) == 1 {
			found = e.key
		}
	}
	if found == nil {
		return nil, fmt.Errorf("psk identity %q: %w", printable(identity), ErrUnknownIdentity)
	}
	return clone(found), nil
}

// LoadPSKFile reads a PSK table from a text file: one "identity hexkey"
// pair per line; blank lines and lines starting with # are skipped.
// Errors name the line.
func LoadPSKFile(path string) (*PSKTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dtlsx: psk file: %w", err)
	}
	defer f.Close()
	t, err := parsePSKTable(bufio.NewScanner(f))
	if err != nil {
		return nil, fmt.Errorf("dtlsx: psk file %s: %w", path, err)
	}
	return t, nil
}

func parsePSKTable(sc *bufio.Scanner) (*PSKTable, error) {
	t := &PSKTable{}
	line := 0
	for sc.Scan() {
		line++
		fields := bytes.Fields(sc.Bytes())
		if len(fields) == 0 || fields[0][0] == '#' {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"identity hexkey\", got %d fields", line, len(fields))
		}
		key, err := hex.DecodeString(string(fields[1]))
		if err != nil || len(key) == 0 {
			return nil, fmt.Errorf("line %d: key of %q is not hex", line, printable(fields[0]))
		}
		if err := t.Set(fields[0], key); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return t, nil
}
