package dtlsx

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
)

// Errors a KeyRing returns; callers branch on them with errors.Is.
var (
	ErrUnknownKey = errors.New("dtlsx: unknown sealing key id")
	ErrActiveKey  = errors.New("dtlsx: cannot retire the active sealing key")
	ErrOpen       = errors.New("dtlsx: sealed record failed authentication")
)

// KeyRing seals persisted sessions with AES-GCM. One key is active and seals
// every new record; the others only open records sealed before a rotation,
// until they are retired. Each record stores the id of the key that sealed
// it, so a ring can be rotated while gateways share one store: roll the new
// key out to every instance with Add, then Activate it, then Retire the old
// one after the session TTL has passed.
//
// The keys live only in memory: a copy of the store file alone reveals no
// master secret. Keys must be 16, 24 or 32 bytes (AES-128/192/256).
type KeyRing struct {
	mu     sync.RWMutex
	aeads  map[uint32]cipher.AEAD
	active uint32
}

// NewKeyRing returns a ring whose active key is key, under id.
func NewKeyRing(id uint32, key []byte) (*KeyRing, error) {
	r := &KeyRing{aeads: make(map[uint32]cipher.AEAD)}
	if err := r.Add(id, key); err != nil {
		return nil, err
	}
	r.active = id
	return r, nil
}

// Add makes key available for opening records under id without sealing with
// it yet. Re-adding an existing id replaces its key.
func (r *KeyRing) Add(id uint32, key []byte) error {
	block, err := aes.NewCipher(key)
	if err != nil {
		return fmt.Errorf("dtlsx: sealing key %d: %w", id, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return fmt.Errorf("dtlsx: sealing key %d: %w", id, err)
	}
	r.mu.Lock()
	r.aeads[id] = aead
	r.mu.Unlock()
	return nil
}

// Activate makes the key id seal all new records.
func (r *KeyRing) Activate(id uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.aeads[id]; !ok {
		return fmt.Errorf("activate %d: %w", id, ErrUnknownKey)
	}
	r.active = id
	return nil
}

// Rotate adds key under id and activates it.
func (r *KeyRing) Rotate(id uint32, key []byte) error {
	if err := r.Add(id, key); err != nil {
		return err
	}
	return r.Activate(id)
}

// Retire forgets the key id; records sealed with it no longer open and are
// treated as cache misses.
func (r *KeyRing) Retire(id uint32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id == r.active {
		return fmt.Errorf("retire %d: %w", id, ErrActiveKey)
	}
	if _, ok := r.aeads[id]; !ok {
		return fmt.Errorf("retire %d: %w", id, ErrUnknownKey)
	}
	delete(r.aeads, id)
	return nil
}

// ActiveID returns the id of the key that seals new records.
func (r *KeyRing) ActiveID() uint32 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.active
}

// seal encrypts plaintext under the active key; the result is nonce||ciphertext.
func (r *KeyRing) seal(dst, plaintext, aad []byte) (uint32, []byte, error) {
	r.mu.RLock()
	id, aead := r.active, r.aeads[r.active]
	r.mu.RUnlock()
	ns := aead.NonceSize()
	out := append(dst, make([]byte, ns)...)
	nonce := out[len(out)-ns:]
	if _, err := rand.Read(nonce); err != nil {
		return 0, nil, fmt.Errorf("dtlsx: nonce: %w", err)
	}
	return id, aead.Seal(out, nonce, plaintext, aad), nil
}

// open decrypts a record sealed under key id.
func (r *KeyRing) open(id uint32, sealed, aad []byte) ([]byte, error) {
	r.mu.RLock()
	aead, ok := r.aeads[id]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("open with key %d: %w", id, ErrUnknownKey)
	}
	ns := aead.NonceSize()
	if len(sealed) < ns+aead.Overhead() {
		return nil, fmt.Errorf("open %d-byte record with key %d: %w", len(sealed), id, ErrOpen)
	}
	pt, err := aead.Open(nil, sealed[:ns], sealed[ns:], aad)
	if err != nil {
		return nil, fmt.Errorf("open with key %d: %w", id, ErrOpen)
	}
	return pt, nil
}

// LoadKeyRingFile reads a KeyRing from a text file: one "id hexkey" line
// per key (id a decimal uint32, the key 16, 24 or 32 bytes in hex); blank
// lines and lines starting with # are skipped. The key with the highest id
// is active (seals new records); the others only open records sealed
// before they were superseded. The file must not be readable by group or
// others. Errors name the line, never a key.
//
// Rotation: append a line with a higher id and restart (or reload) every
// gateway sharing the store; an instance that lacks a key treats records
// sealed with it as cache misses (a full handshake, not a failure). Remove
// the old line once the session TTL has passed since the rotation.
func LoadKeyRingFile(path string) (*KeyRing, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dtlsx: key ring file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("dtlsx: key ring file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("dtlsx: key ring file %s: mode %04o lets group or others read it; chmod 600", path, perm)
	}
	r, err := parseKeyRing(bufio.NewScanner(f))
	if err != nil {
		return nil, fmt.Errorf("dtlsx: key ring file %s: %w", path, err)
	}
	return r, nil
}

func parseKeyRing(sc *bufio.Scanner) (*KeyRing, error) {
	r := &KeyRing{aeads: make(map[uint32]cipher.AEAD)}
	line, active, found := 0, uint32(0), false
	for sc.Scan() {
		line++
		fields := bytes.Fields(sc.Bytes())
		if len(fields) == 0 || fields[0][0] == '#' {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"id hexkey\", got %d fields", line, len(fields))
		}
		id, err := strconv.ParseUint(string(fields[0]), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("line %d: key id %q is not a number 0..%d", line, printable(fields[0]), uint32(math.MaxUint32))
		}
		key, err := hex.DecodeString(string(fields[1]))
		if err != nil {
			return nil, fmt.Errorf("line %d: key %d is not hex", line, id)
		}
		if n := len(key); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("line %d: key %d is %d bytes, want 16, 24 or 32", line, id, n)
		}
		if _, dup := r.aeads[uint32(id)]; dup {
			return nil, fmt.Errorf("line %d: key id %d defined twice", line, id)
		}
		if err := r.Add(uint32(id), key); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		clear(key)
		if !found || uint32(id) > active {
			active, found = uint32(id), true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !found {
		return nil, errors.New("no keys")
	}
	r.active = active
	return r, nil
}
