package dtlsx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

func testSession(id byte, identity string) dtls.Session {
	s := dtls.Session{
		ID:            bytes.Repeat([]byte{id}, 32),
		Secret:        bytes.Repeat([]byte{0xA5, id}, 24),
		Version:       1,
		CipherSuiteID: dtls.TLS_PSK_WITH_AES_128_CCM_8,
		IdentityHint:  []byte(identity),
	}
	s.PSKHash = sha256.Sum256([]byte("key-" + identity))
	return s
}

func openStore(t *testing.T) (*SQLiteStore, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.db")
	st, err := OpenSQLiteStore(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st, path
}

func TestSessionCodecRoundTrip(t *testing.T) {
	for _, s := range []dtls.Session{
		testSession(1, "dev"),
		{ID: []byte{1}, Secret: make([]byte, 48), Version: 1, IsClient: true, ExtendedMasterSecret: true,
			PeerCertificates: [][]byte{{1, 2, 3}, {4}}},
		{},
	} {
		b := appendSession(nil, &s)
		got, err := decodeSession(b)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !bytes.Equal(appendSession(nil, &got), b) {
			t.Fatalf("round trip changed %+v into %+v", s, got)
		}
		for i := 0; i < len(b); i++ {
			if _, err := decodeSession(b[:i]); err == nil {
				t.Fatalf("truncated at %d decoded", i)
			}
		}
	}
}

func TestKeyRingRotation(t *testing.T) {
	r, err := NewKeyRing(1, bytes.Repeat([]byte{1}, 32))
	if err != nil {
		t.Fatal(err)
	}
	id1, sealed1, err := r.seal(nil, []byte("secret"), []byte("aad"))
	if err != nil || id1 != 1 {
		t.Fatalf("seal: %v id %d", err, id1)
	}
	if err := r.Rotate(2, bytes.Repeat([]byte{2}, 16)); err != nil {
		t.Fatal(err)
	}
	id2, sealed2, _ := r.seal(nil, []byte("secret"), []byte("aad"))
	if id2 != 2 {
		t.Fatalf("active key %d after rotation", id2)
	}
	for _, c := range []struct {
		id     uint32
		sealed []byte
	}{{1, sealed1}, {2, sealed2}} {
		if pt, err := r.open(c.id, c.sealed, []byte("aad")); err != nil || string(pt) != "secret" {
			t.Fatalf("open key %d: %q %v", c.id, pt, err)
		}
	}
	if _, err := r.open(1, sealed1, []byte("other aad")); !errors.Is(err, ErrOpen) {
		t.Fatalf("wrong aad: %v", err)
	}
	tampered := append([]byte(nil), sealed2...)
	tampered[len(tampered)-1] ^= 1
	if _, err := r.open(2, tampered, []byte("aad")); !errors.Is(err, ErrOpen) {
		t.Fatalf("tampered: %v", err)
	}
	if err := r.Retire(2); !errors.Is(err, ErrActiveKey) {
		t.Fatalf("retire active: %v", err)
	}
	if err := r.Retire(1); err != nil {
		t.Fatal(err)
	}
	if _, err := r.open(1, sealed1, []byte("aad")); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("retired key still opens: %v", err)
	}
	if _, err := NewKeyRing(1, []byte("short")); err == nil {
		t.Fatal("5-byte key accepted")
	}
}

func TestPersistentCacheSharedAcrossInstances(t *testing.T) {
	store, path := openStore(t)
	ring, _ := NewKeyRing(7, bytes.Repeat([]byte{7}, 32))
	a, err := NewSessionCache(WithPersistentStore(store, ring))
	if err != nil {
		t.Fatal(err)
	}
	s := testSession(1, "dev-1")
	_ = a.Set(s.ID, s)
	_ = a.Close()

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wal, _ := os.ReadFile(path + "-wal")
	if bytes.Contains(append(raw, wal...), s.Secret) {
		t.Fatal("master secret readable in the store file")
	}

	// A second instance with the same ring finds it.
	b, _ := NewSessionCache(WithPersistentStore(store, ring))
	defer b.Close()
	got, _ := b.Get(s.ID)
	if !bytes.Equal(got.Secret, s.Secret) || b.Stats().StoreHits != 1 {
		t.Fatalf("second instance: got %+v stats %+v", got, b.Stats())
	}
	// A third with another key sees a miss, not an error.
	other, _ := NewKeyRing(7, bytes.Repeat([]byte{8}, 32))
	c, _ := NewSessionCache(WithPersistentStore(store, other))
	defer c.Close()
	if got, err := c.Get(s.ID); err != nil || got.ID != nil || c.Stats().OpenErrors != 1 {
		t.Fatalf("wrong key: got %+v err %v stats %+v", got, err, c.Stats())
	}
}

func TestCacheTTLAndLRU(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c, _ := NewSessionCache(WithCapacity(2), WithTTL(time.Minute))
	c.now = func() time.Time { return now }
	s1, s2, s3 := testSession(1, "a"), testSession(2, "b"), testSession(3, "c")
	_ = c.Set(s1.ID, s1)
	_ = c.Set(s2.ID, s2)
	_, _ = c.Get(s1.ID) // s1 most recent
	_ = c.Set(s3.ID, s3)
	if got, _ := c.Get(s2.ID); got.ID != nil {
		t.Fatal("least recently used session not evicted")
	}
	if got, _ := c.Get(s1.ID); got.ID == nil {
		t.Fatal("recent session evicted")
	}
	now = now.Add(2 * time.Minute)
	if got, _ := c.Get(s1.ID); got.ID != nil {
		t.Fatal("expired session returned")
	}
	if st := c.Stats(); st.Evicted != 1 || st.Expired != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRevokeIdentity(t *testing.T) {
	store, _ := openStore(t)
	ring, _ := NewKeyRing(1, bytes.Repeat([]byte{1}, 32))
	c, _ := NewSessionCache(WithPersistentStore(store, ring))
	for i, id := range []string{"dev-a", "dev-a", "dev-b"} {
		s := testSession(byte(i+1), id)
		_ = c.Set(s.ID, s)
	}
	_ = c.Close() // flush
	n, err := c.Revoke(context.Background(), "psk:dev-a")
	if err != nil || n != 2 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	fresh, _ := NewSessionCache(WithPersistentStore(store, ring))
	defer fresh.Close()
	for i, want := range []bool{false, false, true} {
		got, _ := fresh.Get(bytes.Repeat([]byte{byte(i + 1)}, 32))
		if (got.ID != nil) != want {
			t.Fatalf("session %d present=%v after revoke, want %v", i+1, got.ID != nil, want)
		}
	}
}

func TestChangedPSKDropsSession(t *testing.T) {
	var tbl PSKTable
	_ = tbl.Set([]byte("dev"), []byte("key-dev"))
	c, _ := NewSessionCache(WithSessionPSK(&tbl))
	s := testSession(1, "dev")
	_ = c.Set(s.ID, s)
	if got, _ := c.Get(s.ID); got.ID == nil {
		t.Fatal("valid PSK session missing")
	}
	_ = tbl.Set([]byte("dev"), []byte("rotated"))
	if got, _ := c.Get(s.ID); got.ID != nil {
		t.Fatal("session of a changed PSK still resumable")
	}
	if c.Stats().Revoked != 1 || c.Len() != 0 {
		t.Fatalf("stats %+v len %d", c.Stats(), c.Len())
	}
}

// failingStore fails every call, like a locked or vanished database.
type failingStore struct{ calls atomic.Int64 }

var errStoreDown = errors.New("store down")

func (f *failingStore) LoadSession(context.Context, []byte) (SealedSession, error) {
	f.calls.Add(1)
	return SealedSession{}, errStoreDown
}
func (f *failingStore) SaveSessions(context.Context, []SealedSession) error {
	f.calls.Add(1)
	return errStoreDown
}
func (f *failingStore) DeleteSessions(context.Context, [][]byte) error {
	f.calls.Add(1)
	return errStoreDown
}
func (f *failingStore) DeleteIdentity(context.Context, string) (int, error) {
	f.calls.Add(1)
	return 0, errStoreDown
}

// TestStoreFailureIsACacheMiss: a broken store never fails a handshake;
// full and resumed handshakes go on from memory and failures are counted.
func TestStoreFailureIsACacheMiss(t *testing.T) {
	pki := newPKI(t)
	ring, _ := NewKeyRing(1, bytes.Repeat([]byte{1}, 32))
	fs := &failingStore{}
	cache, _ := NewSessionCache(WithPersistentStore(fs, ring))
	defer cache.Close()
	l := listen(t, WithCertificate(pki.server), WithSessionCache(cache))
	serveEcho(t, l)
	clientCache, _ := NewSessionCache()
	for i := 0; i < 2; i++ {
		c, err := Dial(ctxT(t, 5*time.Second), "udp", l.Addr().String(),
			WithRootCAs(pki.pool), WithServerName("gw.test"), WithSessionCache(clientCache))
		if err != nil {
			t.Fatalf("handshake %d with a failing store: %v", i, err)
		}
		echoOnce(t, c, "x")
		_ = c.Close()
	}
	// A session unknown to memory goes to the store, which fails: a miss.
	if got, err := cache.Get(bytes.Repeat([]byte{9}, 32)); err != nil || got.ID != nil {
		t.Fatalf("Get on failing store: %+v %v", got, err)
	}
	_ = cache.Close()
	st := cache.Stats()
	if st.StoreErrors < 2 || fs.calls.Load() < 2 {
		t.Fatalf("store failures not counted: %+v", st)
	}
	if ls := l.Stats(); ls.HandshakesFull != 1 || ls.HandshakesResumed != 1 {
		t.Fatalf("listener stats %+v, want 1 full + 1 resumed from memory", ls)
	}
}

func TestPSKTable(t *testing.T) {
	tbl, err := parsePSKTable(scanner("# devices\nsensor-1 00112233\n\nsensor-2 aabb\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k, err := tbl.PSK([]byte("sensor-2")); err != nil || !bytes.Equal(k, []byte{0xaa, 0xbb}) {
		t.Fatalf("sensor-2: %x %v", k, err)
	}
	if _, err := tbl.PSK([]byte("sensor-3")); !errors.Is(err, ErrUnknownIdentity) {
		t.Fatalf("unknown identity: %v", err)
	}
	tbl.Delete([]byte("sensor-1"))
	if _, err := tbl.PSK([]byte("sensor-1")); !errors.Is(err, ErrUnknownIdentity) {
		t.Fatalf("deleted identity: %v", err)
	}
	for _, bad := range []string{"only-identity\n", "id zz\n", "a b c\n"} {
		if _, err := parsePSKTable(scanner(bad)); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}

func TestSQLitePSK(t *testing.T) {
	store, _ := openStore(t)
	ctx := context.Background()
	if err := store.SetPSK(ctx, []byte("dev"), []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if k, err := store.PSK([]byte("dev")); err != nil || !bytes.Equal(k, []byte{1, 2, 3}) {
		t.Fatalf("psk: %x %v", k, err)
	}
	_ = store.DeletePSK(ctx, []byte("dev"))
	if _, err := store.PSK([]byte("dev")); !errors.Is(err, ErrUnknownIdentity) {
		t.Fatalf("deleted psk: %v", err)
	}
}
