package dtlsx

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// SQLiteStore is the reference PersistentStore and a PSKProvider: one
// SQLite file (WAL mode, pure Go) that gateway restarts and several gateway
// processes on one host can share. Session rows hold only sealed blobs; PSK
// rows hold keys in the clear, so protect the file like a key file if you
// keep PSKs in it.
type SQLiteStore struct {
	db  *sql.DB
	now func() time.Time
}

var (
	_ PersistentStore = (*SQLiteStore)(nil)
	_ PSKProvider     = (*SQLiteStore)(nil)
)

// OpenSQLiteStore opens (creating if needed) the store at path.
func OpenSQLiteStore(ctx context.Context, path string) (*SQLiteStore, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("dtlsx: open session store %s: %w", path, err)
	}
	const schema = `
CREATE TABLE IF NOT EXISTS dtls_sessions (
  id       BLOB PRIMARY KEY,
  identity TEXT NOT NULL,
  key_id   INTEGER NOT NULL,
  sealed   BLOB NOT NULL,
  expires  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dtls_sessions_identity ON dtls_sessions(identity);
CREATE INDEX IF NOT EXISTS dtls_sessions_expires ON dtls_sessions(expires);
CREATE TABLE IF NOT EXISTS dtls_psk (
  identity BLOB PRIMARY KEY,
  key      BLOB NOT NULL
) WITHOUT ROWID;`
	// A few long-lived connections: opening one parses the schema, and a
	// reconnect storm would otherwise open and close one per lookup.
	db.SetMaxOpenConns(4)
	db.SetMaxIdleConns(4)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("dtlsx: session store %s schema: %w", path, err)
	}
	return &SQLiteStore{db: db, now: time.Now}, nil
}

// Close closes the database.
func (s *SQLiteStore) Close() error { return s.db.Close() }

// LoadSession implements PersistentStore. A load that has started is not
// interrupted by ctx: it is one primary-key read, which in WAL mode never
// waits for a writer, and watching ctx would cost database/sql and the
// driver a goroutine each per lookup, thousands of them in a reconnect
// storm.
func (s *SQLiteStore) LoadSession(ctx context.Context, id []byte) (SealedSession, error) {
	var r SealedSession
	if err := ctx.Err(); err != nil {
		return r, fmt.Errorf("dtlsx: load session %x: %w", id, err)
	}
	var exp int64
	err := s.db.QueryRowContext(context.WithoutCancel(ctx),
		`SELECT id, identity, key_id, sealed, expires FROM dtls_sessions WHERE id = ?`, id).
		Scan(&r.ID, &r.Identity, &r.KeyID, &r.Sealed, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("session %x: %w", id, ErrNotFound)
	}
	if err != nil {
		return r, fmt.Errorf("dtlsx: load session %x: %w", id, err)
	}
	r.Expires = time.Unix(exp, 0)
	return r, nil
}

// SaveSessions implements PersistentStore in one transaction.
func (s *SQLiteStore) SaveSessions(ctx context.Context, recs []SealedSession) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO dtls_sessions(id, identity, key_id, sealed, expires) VALUES (?,?,?,?,?)`)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, r := range recs {
			if _, err := st.ExecContext(ctx, r.ID, r.Identity, r.KeyID, r.Sealed, r.Expires.Unix()); err != nil {
				return fmt.Errorf("save session %x: %w", r.ID, err)
			}
		}
		return nil
	})
}

// DeleteSessions implements PersistentStore.
func (s *SQLiteStore) DeleteSessions(ctx context.Context, ids [][]byte) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `DELETE FROM dtls_sessions WHERE id = ?`, id); err != nil {
				return fmt.Errorf("delete session %x: %w", id, err)
			}
		}
		return nil
	})
}

// DeleteIdentity implements PersistentStore.
func (s *SQLiteStore) DeleteIdentity(ctx context.Context, identity string) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM dtls_sessions WHERE identity = ?`, identity)
	if err != nil {
		return 0, fmt.Errorf("dtlsx: revoke %q: %w", identity, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// DeleteExpired removes sessions past their TTL; call it now and then
// (lookups already ignore expired rows).
func (s *SQLiteStore) DeleteExpired(ctx context.Context) (int, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM dtls_sessions WHERE expires <= ?`, s.now().Unix())
	if err != nil {
		return 0, fmt.Errorf("dtlsx: delete expired sessions: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// SetPSK adds or replaces the key of a PSK identity.
func (s *SQLiteStore) SetPSK(ctx context.Context, identity, key []byte) error {
	if len(identity) == 0 || len(key) == 0 {
		return errors.New("dtlsx: psk identity and key must not be empty")
	}
	if _, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO dtls_psk(identity, key) VALUES (?,?)`, identity, key); err != nil {
		return fmt.Errorf("dtlsx: set psk %q: %w", identity, err)
	}
	return nil
}

// DeletePSK removes a PSK identity; pair it with SessionCache.Revoke to end
// its resumable sessions too.
func (s *SQLiteStore) DeletePSK(ctx context.Context, identity []byte) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM dtls_psk WHERE identity = ?`, identity); err != nil {
		return fmt.Errorf("dtlsx: delete psk %q: %w", identity, err)
	}
	return nil
}

// PSK implements PSKProvider.
func (s *SQLiteStore) PSK(identity []byte) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var key []byte
	err := s.db.QueryRowContext(ctx, `SELECT key FROM dtls_psk WHERE identity = ?`, identity).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("psk identity %q: %w", printable(identity), ErrUnknownIdentity)
	}
	if err != nil {
		return nil, fmt.Errorf("dtlsx: psk lookup: %w", err)
	}
	return key, nil
}

func (s *SQLiteStore) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("dtlsx: session store: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return fmt.Errorf("dtlsx: session store: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("dtlsx: session store commit: %w", err)
	}
	return nil
}

// printable shortens an identity for error messages.
func printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "?")
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return s
}
