package resume

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgw/gateway"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" database/sql driver
)

// Errors callers branch on with errors.Is.
var (
	// ErrStoreFull is returned by Append when the store is at its row or
	// byte bound under OverflowRejectNew, when the file system is short of
	// space (including ENOSPC from SQLite), or when free space is below
	// MinFreeBytes. Nothing of the refused batch was stored: the caller
	// must not acknowledge it, and may retry later (backpressure).
	ErrStoreFull = errors.New("resume: store full")
	// ErrStoreIO wraps an I/O error SQLite reported. The transaction was
	// rolled back: nothing of it was acknowledged.
	ErrStoreIO = errors.New("resume: store I/O error")
	// ErrStoreClosed is returned after Close.
	ErrStoreClosed = errors.New("resume: store closed")
)

// Synchronous is SQLite's durability level for commits of new records.
type Synchronous string

const (
	// SyncFull fsyncs the write-ahead log on every commit: a committed
	// record survives power loss. The default.
	SyncFull Synchronous = "FULL"
	// SyncNormal fsyncs only at checkpoints: a commit survives the process
	// being killed (kill -9) but the last commits may be lost on power
	// loss. Faster on slow flash.
	SyncNormal Synchronous = "NORMAL"
)

// Overflow is what Append does when the store is at MaxRows or MaxBytes.
type Overflow uint8

const (
	// OverflowRejectNew refuses the new batch with ErrStoreFull
	// (backpressure up to the devices). The default: nothing accepted is
	// ever dropped.
	OverflowRejectNew Overflow = iota
	// OverflowDropOldest evicts the oldest records of the lowest priority
	// present (never held ones) to make room; every eviction is counted
	// (Stats.Evicted) and logged.
	OverflowDropOldest
)

// SQLiteConfig configures a SQLiteStore. The zero value of every field but
// Path selects its default.
type SQLiteConfig struct {
	// Path is the database file. Its directory must exist. Required.
	Path string
	// Synchronous is SyncFull (default) or SyncNormal.
	Synchronous Synchronous
	// CommitMaxRecords caps the records of one group commit. Default 4096.
	// A commit starts as soon as the previous one has finished, with every
	// Append that queued meanwhile, so concurrent producers share fsyncs
	// without anyone waiting for a timer.
	CommitMaxRecords int
	// CommitDelay, when positive, makes the writer wait up to this long
	// for more records before committing a group smaller than
	// CommitMaxRecords: fewer fsyncs, more latency. Default 0.
	CommitDelay time.Duration
	// MaxRows and MaxBytes bound the records kept (bytes count payloads).
	// Defaults: 10,000,000 rows, 1 GiB.
	MaxRows  int64
	MaxBytes int64
	// Overflow picks the policy at the bound. Default OverflowRejectNew.
	Overflow Overflow
	// MinFreeBytes is the free space the file system must keep (plus
	// three times the bytes of the batch being appended, for the WAL copy
	// and the checkpoint); below it Append returns ErrStoreFull, with the
	// figures, before SQLite runs into ENOSPC. Default (0): 2% of the file
	// system's size, at least 1 MiB and at most 16 MiB (DefaultMinFree),
	// so a 16 MiB partition keeps 1 MiB and stores up to the rest, while a
	// large one keeps 16 MiB for the rest of the system. A larger value
	// protects other writers on a shared file system; a smaller one uses
	// more of it. Negative disables the check.
	MinFreeBytes int64
	// SkipIntegrityCheck skips PRAGMA quick_check at open (which reads the
	// whole file: about a second per GiB). Default false.
	SkipIntegrityCheck bool
	// Logger receives evictions, moved-aside corrupt files and write
	// errors. Default slog.Default().
	Logger *slog.Logger
}

func (c *SQLiteConfig) withDefaults() error {
	if c.Path == "" {
		return errors.New("resume: sqlite: path is required")
	}
	switch strings.ToUpper(string(c.Synchronous)) {
	case "":
		c.Synchronous = SyncFull
	case "FULL", "NORMAL":
		c.Synchronous = Synchronous(strings.ToUpper(string(c.Synchronous)))
	default:
		return fmt.Errorf("resume: sqlite: synchronous %q: want FULL or NORMAL", c.Synchronous)
	}
	if c.CommitMaxRecords <= 0 {
		c.CommitMaxRecords = 4096
	}
	if c.MaxRows <= 0 {
		c.MaxRows = 10_000_000
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 1 << 30
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Seq layout: a record's rowid is (255-priority)<<48 | counter, so the
// INTEGER PRIMARY KEY order is priority first, then arrival; no secondary
// index is kept (less write amplification) and the clock never matters.
const (
	seqCounterBits = 48
	seqCounterMask = 1<<seqCounterBits - 1
)

func makeSeq(p gateway.Priority, counter uint64) uint64 {
	return uint64(255-p)<<seqCounterBits | counter&seqCounterMask
}

// PriorityOf returns the priority encoded in a SQLiteStore record's Seq.
func PriorityOf(seq uint64) gateway.Priority {
	return gateway.Priority(255 - seq>>seqCounterBits)
}

const schema = `
CREATE TABLE IF NOT EXISTS records (
	seq      INTEGER PRIMARY KEY,
	id       BLOB    NOT NULL,
	sink     TEXT    NOT NULL,
	payload  BLOB    NOT NULL,
	attempts INTEGER NOT NULL,
	next_try INTEGER NOT NULL,
	enqueued INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
	seq       INTEGER PRIMARY KEY AUTOINCREMENT,
	id        BLOB    NOT NULL UNIQUE,
	connector TEXT    NOT NULL,
	device    TEXT    NOT NULL,
	topic     TEXT    NOT NULL,
	codec     TEXT    NOT NULL,
	error     TEXT    NOT NULL,
	received  INTEGER NOT NULL,
	failed    INTEGER NOT NULL,
	payload   BLOB    NOT NULL
);`

// SQLiteStore is the reference gateway.Store: a SQLite database in WAL mode
// (modernc.org/sqlite, pure Go). Appends from concurrent producers share
// group commits; each producer returns only after the commit holding its
// records. Acks are applied in the next transaction and return before it
// commits: an ack lost in a crash only replays a record the consumer
// de-duplicates by its MessageID.
//
// The database opens on first use (or Open), so building one starts
// nothing. Close it when done.
type SQLiteStore struct {
	cfg SQLiteConfig
	log *slog.Logger

	openOnce sync.Once
	openErr  error
	db       *sql.DB // reader pool
	wdb      *sql.DB // the writer's single connection

	appends chan *appendReq
	acks    chan []uint64
	updates chan *releaseReq
	stop    chan struct{}
	stopped chan struct{}
	closeMu sync.RWMutex
	closed  bool

	mu      sync.Mutex // guards held, cursor, counter
	held    map[uint64]heldRec
	cursor  uint64 // Next scans from here: every lower seq is held or gone
	counter uint64

	// The writer goroutine's scratch for INSERTs, and its statements.
	insArgs  []any
	insBox   argBox
	insFull  *sql.Stmt // insertRows rows
	insOne   *sql.Stmt // one row
	delRange *sql.Stmt // a range of seq

	ackRetry []uint64 // acks a failed transaction left; the writer's own

	rows, bytes, evicted, commits, committedRecs atomic.Int64
}

type heldRec struct {
	size     int32
	attempts uint32
	nextTry  int64
}

type appendReq struct {
	recs []gateway.Record
	done chan error
}

type releaseReq struct {
	recs []gateway.Record
	done chan error
}

var (
	_ gateway.Store           = (*SQLiteStore)(nil)
	_ gateway.Checker         = (*SQLiteStore)(nil)
	_ gateway.DeadLetterStore = (*SQLiteStore)(nil)
)

// NewSQLiteStore validates cfg and returns a store that opens its file on
// first use.
func NewSQLiteStore(cfg SQLiteConfig) (*SQLiteStore, error) {
	if err := cfg.withDefaults(); err != nil {
		return nil, err
	}
	if st, err := os.Stat(filepath.Dir(cfg.Path)); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("resume: sqlite: path %q: directory does not exist", cfg.Path)
	}
	return &SQLiteStore{
		cfg: cfg, log: cfg.Logger,
		appends: make(chan *appendReq, 1024),
		acks:    make(chan []uint64, 1024),
		updates: make(chan *releaseReq, 64),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		held:    map[uint64]heldRec{},
	}, nil
}

// OpenSQLiteStore is NewSQLiteStore followed by Open.
func OpenSQLiteStore(cfg SQLiteConfig) (*SQLiteStore, error) {
	s, err := NewSQLiteStore(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.Open(); err != nil {
		return nil, err
	}
	return s, nil
}

// Open opens the database now (otherwise the first call does). A file
// that is not a sound SQLite database is renamed to
// <path>.corrupt-<unix time> (with its -wal and -shm files), logged, and a
// new database is started in its place.
func (s *SQLiteStore) Open() error {
	s.openOnce.Do(func() {
		s.openErr = s.open()
		if s.openErr == nil {
			go s.writer()
		} else {
			close(s.stopped)
		}
	})
	return s.openErr
}

func (s *SQLiteStore) dsn() string {
	return "file:" + s.cfg.Path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)" +
		"&_pragma=synchronous(" + string(s.cfg.Synchronous) + ")&_txlock=immediate"
}

func (s *SQLiteStore) open() error {
	err := s.openFile()
	if err == nil {
		return nil
	}
	if !isCorrupt(err) {
		return err
	}
	aside, merr := s.moveAside()
	if merr != nil {
		return fmt.Errorf("resume: sqlite: %s is corrupt (%v) and could not be moved aside: %w", s.cfg.Path, err, merr)
	}
	s.log.Error("store file corrupt; moved aside and started a new one", "path", s.cfg.Path, "moved_to", aside, "err", err)
	return s.openFile()
}

func isCorrupt(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "not a database") || strings.Contains(msg, "malformed") ||
		strings.Contains(msg, "corrupt") || strings.Contains(msg, "SQLITE_CORRUPT") || strings.Contains(msg, "SQLITE_NOTADB")
}

func (s *SQLiteStore) moveAside() (string, error) {
	aside := fmt.Sprintf("%s.corrupt-%d", s.cfg.Path, time.Now().Unix())
	if err := os.Rename(s.cfg.Path, aside); err != nil {
		return "", err
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(s.cfg.Path + suffix); err == nil {
			if err := os.Rename(s.cfg.Path+suffix, aside+suffix); err != nil {
				return aside, err
			}
		}
	}
	return aside, nil
}

func (s *SQLiteStore) openFile() error {
	wdb, err := sql.Open("sqlite", s.dsn())
	if err != nil {
		return fmt.Errorf("resume: sqlite: open %s: %w", s.cfg.Path, err)
	}
	wdb.SetMaxOpenConns(1)
	fail := func(what string, err error) error {
		_ = wdb.Close()
		return fmt.Errorf("resume: sqlite: %s %s: %w", what, s.cfg.Path, err)
	}
	if _, err := wdb.Exec(schema); err != nil {
		return fail("create schema in", err)
	}
	if !s.cfg.SkipIntegrityCheck {
		var res string
		if err := wdb.QueryRow("PRAGMA quick_check").Scan(&res); err != nil {
			return fail("check", err)
		}
		if res != "ok" {
			return fail("check", fmt.Errorf("database disk image is malformed: %s", res))
		}
	}
	var rows, bytes sql.NullInt64
	if err := wdb.QueryRow("SELECT count(*), coalesce(sum(length(payload)), 0) FROM records").Scan(&rows, &bytes); err != nil {
		return fail("count records in", err)
	}
	counter, err := maxCounter(wdb)
	if err != nil {
		return fail("read sequence of", err)
	}
	// The writer's statements, prepared once: parsing the SQL of every
	// INSERT and DELETE again cost a fifth of an edge-mode frame's CPU.
	for _, st := range []struct {
		dst **sql.Stmt
		q   string
	}{
		{&s.insFull, insertSQL(insertRows)},
		{&s.insOne, insertSQL(1)},
		{&s.delRange, "DELETE FROM records WHERE seq BETWEEN ? AND ?"},
	} {
		if *st.dst, err = wdb.Prepare(st.q); err != nil {
			s.closeStmts()
			return fail("prepare statements of", err)
		}
	}
	db, err := sql.Open("sqlite", s.dsn())
	if err != nil {
		s.closeStmts()
		return fail("open reader of", err)
	}
	db.SetMaxOpenConns(2)
	s.db, s.wdb = db, wdb
	s.rows.Store(rows.Int64)
	s.bytes.Store(bytes.Int64)
	s.counter = counter
	return nil
}

// maxCounter finds the highest counter over all priority bands, one index
// seek per band present.
func maxCounter(db *sql.DB) (uint64, error) {
	var max uint64
	from := int64(0)
	for {
		var first int64
		err := db.QueryRow("SELECT seq FROM records WHERE seq >= ? ORDER BY seq LIMIT 1", from).Scan(&first)
		if errors.Is(err, sql.ErrNoRows) {
			return max, nil
		}
		if err != nil {
			return 0, err
		}
		band := uint64(first) >> seqCounterBits
		var last int64
		if err := db.QueryRow("SELECT max(seq) FROM records WHERE seq < ?", int64((band+1)<<seqCounterBits)).Scan(&last); err != nil {
			return 0, err
		}
		if c := uint64(last) & seqCounterMask; c > max {
			max = c
		}
		from = int64((band + 1) << seqCounterBits)
	}
}

// Close commits pending acks, stops the writer and closes the database.
func (s *SQLiteStore) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()
	s.openOnce.Do(func() { s.openErr = ErrStoreClosed; close(s.stopped) })
	close(s.stop)
	<-s.stopped
	if s.db == nil {
		return nil
	}
	s.closeStmts()
	return errors.Join(s.db.Close(), s.wdb.Close())
}

// closeStmts closes the writer's prepared statements.
func (s *SQLiteStore) closeStmts() {
	for _, st := range []**sql.Stmt{&s.insFull, &s.insOne, &s.delRange} {
		if *st != nil {
			_ = (*st).Close()
			*st = nil
		}
	}
}

// enter guards a call against Close; leave with the returned func.
func (s *SQLiteStore) enter() (func(), error) {
	if err := s.Open(); err != nil {
		return nil, err
	}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return nil, ErrStoreClosed
	}
	return s.closeMu.RUnlock, nil
}

// Append implements gateway.Store: it returns after the group commit that
// holds recs, with their Seq filled in.
func (s *SQLiteStore) Append(ctx context.Context, recs []gateway.Record) error {
	if len(recs) == 0 {
		return nil
	}
	leave, err := s.enter()
	if err != nil {
		return err
	}
	req := &appendReq{recs: recs, done: make(chan error, 1)}
	select {
	case s.appends <- req:
	case <-ctx.Done():
		leave()
		return ctx.Err()
	}
	leave()
	// Once queued the writer owns recs until it answers: waiting for the
	// commit cannot be cut short without racing on their Seq fields.
	return <-req.done
}

// Ack implements gateway.Store. It queues the deletes for the next
// transaction and returns; the records stay held until they are gone, so
// Next never hands them out again.
func (s *SQLiteStore) Ack(ctx context.Context, seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	leave, err := s.enter()
	if err != nil {
		return err
	}
	defer leave()
	cp := append([]uint64(nil), seqs...)
	select {
	case s.acks <- cp:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release implements gateway.Store. Records whose Attempts and NextTry are
// unchanged go back to the queue at once; the others after their update
// commits.
func (s *SQLiteStore) Release(ctx context.Context, recs []gateway.Record) error {
	if len(recs) == 0 {
		return nil
	}
	leave, err := s.enter()
	if err != nil {
		return err
	}
	var changed []gateway.Record
	s.mu.Lock()
	for _, r := range recs {
		h, ok := s.held[r.Seq]
		if !ok {
			continue
		}
		if h.attempts == r.Attempts && h.nextTry == unixNano(r.NextTry) {
			delete(s.held, r.Seq)
			s.cursor = min(s.cursor, r.Seq)
			continue
		}
		changed = append(changed, r)
	}
	s.mu.Unlock()
	if len(changed) == 0 {
		leave()
		return nil
	}
	req := &releaseReq{recs: changed, done: make(chan error, 1)}
	select {
	case s.updates <- req:
	case <-ctx.Done():
		leave()
		return ctx.Err()
	}
	leave()
	return <-req.done
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Next implements gateway.Store.
func (s *SQLiteStore) Next(ctx context.Context, max int) ([]gateway.Record, error) {
	if max <= 0 {
		return nil, nil
	}
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	// The lock spans the read so the writer cannot un-hold a record between
	// our snapshot and our check of the hold (it would look free but be
	// deleted already).
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now().UnixNano()
	// First the sequence numbers, without the payloads: in edge mode most
	// records are held (frames the gateway is processing), and reading
	// their payloads only to skip them cost more than the appends.
	var picked []int64
	from := s.cursor
	// The held records right after the cursor are skipped in memory: in
	// edge mode they are every frame appended since the last call.
	for {
		if _, ok := s.held[from]; !ok {
			break
		}
		from++
	}
	cursor, advance := from, true
	chunk := max
	// Holds and the cursor change only once the whole scan succeeded: a
	// failed read must not leave records held that nobody will release.
	for len(picked) < max {
		rows, err := s.db.QueryContext(ctx,
			"SELECT seq, next_try FROM records WHERE seq >= ? ORDER BY seq LIMIT ?", int64(from), chunk)
		if err != nil {
			return nil, fmt.Errorf("resume: sqlite: next: %w", err)
		}
		n := 0
		for rows.Next() {
			n++
			var seq, nextTry int64
			if err := rows.Scan(&seq, &nextTry); err != nil {
				rows.Close()
				return nil, fmt.Errorf("resume: sqlite: next: %w", err)
			}
			from = uint64(seq) + 1
			if _, ok := s.held[uint64(seq)]; ok {
				if advance {
					cursor = from
				}
				continue
			}
			if nextTry > now || len(picked) == max {
				advance = false
				continue
			}
			picked = append(picked, seq)
			if advance {
				cursor = from
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("resume: sqlite: next: %w", err)
		}
		if n < chunk {
			break
		}
		chunk = min(chunk*2, 16384)
	}
	var out []gateway.Record
	if len(picked) > 0 {
		rows, err := s.db.QueryContext(ctx,
			"SELECT seq, id, sink, payload, attempts, next_try, enqueued FROM records WHERE seq >= ? AND seq <= ? ORDER BY seq",
			picked[0], picked[len(picked)-1])
		if err != nil {
			return nil, fmt.Errorf("resume: sqlite: next: %w", err)
		}
		k := 0
		for rows.Next() && k < len(picked) {
			var (
				seq, attempts, nextTry, enq int64
				id, payload                 []byte
				sink                        string
			)
			if err := rows.Scan(&seq, &id, &sink, &payload, &attempts, &nextTry, &enq); err != nil {
				rows.Close()
				return nil, fmt.Errorf("resume: sqlite: next: %w", err)
			}
			if seq != picked[k] {
				continue // held, or not due: skipped above
			}
			k++
			r := gateway.Record{
				Seq: uint64(seq), Priority: PriorityOf(uint64(seq)), Sink: sink, Payload: payload,
				Attempts: uint32(attempts), NextTry: fromUnixNano(nextTry), Enqueued: fromUnixNano(enq),
			}
			copy(r.ID[:], id)
			out = append(out, r)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("resume: sqlite: next: %w", err)
		}
	}
	for _, r := range out {
		s.held[r.Seq] = heldRec{size: int32(len(r.Payload)), attempts: r.Attempts, nextTry: unixNano(r.NextTry)}
	}
	s.cursor = cursor
	return out, nil
}

// Check implements gateway.Checker: the store is open and has room.
func (s *SQLiteStore) Check(ctx context.Context) error {
	if err := s.Open(); err != nil {
		return err
	}
	if err := s.spaceLeft(0); err != nil {
		return err
	}
	if s.rows.Load() >= s.cfg.MaxRows || s.bytes.Load() >= s.cfg.MaxBytes {
		return fmt.Errorf("%w: %d rows, %d bytes", ErrStoreFull, s.rows.Load(), s.bytes.Load())
	}
	return nil
}

// StoreStats are a SQLiteStore's counters.
type StoreStats struct {
	Rows, Bytes   int64 // records kept and their payload bytes
	Held          int   // records handed out and not yet acked or released
	Evicted       int64 // records dropped by OverflowDropOldest
	Commits       int64 // write transactions committed
	CommittedRecs int64 // records appended by those commits
}

// Stats returns the store's counters.
func (s *SQLiteStore) Stats() StoreStats {
	s.mu.Lock()
	held := len(s.held)
	s.mu.Unlock()
	return StoreStats{
		Rows: s.rows.Load(), Bytes: s.bytes.Load(), Held: held, Evicted: s.evicted.Load(),
		Commits: s.commits.Load(), CommittedRecs: s.committedRecs.Load(),
	}
}

// Bounds of the default MinFreeBytes (see DefaultMinFree).
const (
	minFreeFloor   = 1 << 20
	minFreeCap     = 16 << 20
	minFreePercent = 2
)

// DefaultMinFree is the free space a store keeps by default on a file
// system of size bytes: 2% of it, at least 1 MiB, at most 16 MiB.
func DefaultMinFree(size int64) int64 {
	return min(max(size/100*minFreePercent, minFreeFloor), minFreeCap)
}

// statfs reports free space and size of the file system holding a
// directory; tests replace it.
var statfs = fsSpace

func (s *SQLiteStore) spaceLeft(need int64) error {
	if s.cfg.MinFreeBytes < 0 {
		return nil
	}
	dir := filepath.Dir(s.cfg.Path)
	free, size, ok := statfs(dir)
	if !ok {
		return nil
	}
	keep, how := s.cfg.MinFreeBytes, "min_free_bytes"
	if keep == 0 {
		keep, how = DefaultMinFree(size), "default min_free_bytes: 2% of the file system, 1 MiB to 16 MiB"
	}
	if free < keep+need {
		return fmt.Errorf("%w: %d bytes free on the file system of %s (size %d bytes), %d required (%d to keep, %s; %d for this batch)",
			ErrStoreFull, free, dir, size, keep+need, keep, how, need)
	}
	return nil
}

// sortedRanges turns seqs into runs of consecutive values.
func sortedRanges(seqs []uint64) [][2]uint64 {
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	var out [][2]uint64
	for _, q := range seqs {
		if n := len(out); n > 0 && (q == out[n-1][1] || q == out[n-1][1]+1) {
			out[n-1][1] = q
			continue
		}
		out = append(out, [2]uint64{q, q})
	}
	return out
}
