package resume

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/iotgw/gateway/internal/backoff"
)

// insertRows is how many records one INSERT statement carries: fewer
// statement executions per commit.
const insertRows = 32

const insertCols = "(seq, id, sink, payload, attempts, next_try, enqueued)"

// maxAckBatch bounds the deletes gathered into one transaction.
const maxAckBatch = 1 << 16

// writer is the only goroutine that writes the database. Each loop turn is
// one transaction: the appends queued so far (group commit), pending acks
// and releases.
func (s *SQLiteStore) writer() {
	defer close(s.stopped)
	w := &txWork{}
	bo := backoff.Backoff{Min: 50 * time.Millisecond, Max: 5 * time.Second, Stable: time.Second}
	for {
		w.reset()
		// Acks a failed transaction could not apply (a full disk cannot
		// even grow the WAL for the deletes) are retried with backoff:
		// dropping them would leave the records held, so taking space
		// until a restart, which then delivers them again.
		var retry <-chan time.Time
		var timer *time.Timer
		if len(s.ackRetry) > 0 {
			timer = time.NewTimer(bo.Next())
			retry = timer.C
		}
		w.acks = append(w.acks, s.ackRetry...)
		s.ackRetry = s.ackRetry[:0]
		select {
		case <-retry:
		case <-s.stop:
			s.drainAcks(w)
			if len(w.acks) > 0 || len(w.updates) > 0 {
				s.commit(w)
			}
			s.failQueued()
			return
		case r := <-s.appends:
			w.add(r)
		case a := <-s.acks:
			w.acks = append(w.acks, a...)
		case u := <-s.updates:
			w.updates = append(w.updates, u)
		}
		if timer != nil {
			timer.Stop()
		}
		s.gather(w)
		if s.commit(w) {
			bo.Up()
		}
	}
}

// failQueued answers producers that queued after the writer stopped.
func (s *SQLiteStore) failQueued() {
	for {
		select {
		case r := <-s.appends:
			r.done <- ErrStoreClosed
		case u := <-s.updates:
			u.done <- ErrStoreClosed
		default:
			return
		}
	}
}

type txWork struct {
	appends []*appendReq
	nrecs   int
	acks    []uint64
	updates []*releaseReq
}

func (w *txWork) reset() {
	clear(w.appends)
	w.appends, w.nrecs, w.acks = w.appends[:0], 0, w.acks[:0]
	clear(w.updates)
	w.updates = w.updates[:0]
}

func (w *txWork) add(r *appendReq) {
	w.appends = append(w.appends, r)
	w.nrecs += len(r.recs)
}

func (s *SQLiteStore) drainAcks(w *txWork) {
	for len(w.acks) < maxAckBatch {
		select {
		case a := <-s.acks:
			w.acks = append(w.acks, a...)
		default:
			return
		}
	}
}

// gather takes everything already queued, up to CommitMaxRecords, waiting
// up to CommitDelay for more when configured.
func (s *SQLiteStore) gather(w *txWork) {
	var deadline <-chan time.Time
	if s.cfg.CommitDelay > 0 && len(w.appends) > 0 {
		t := time.NewTimer(s.cfg.CommitDelay)
		defer t.Stop()
		deadline = t.C
	}
	for w.nrecs < s.cfg.CommitMaxRecords && len(w.acks) < maxAckBatch {
		select {
		case r := <-s.appends:
			w.add(r)
			continue
		case a := <-s.acks:
			w.acks = append(w.acks, a...)
			continue
		case u := <-s.updates:
			w.updates = append(w.updates, u)
			continue
		default:
		}
		if deadline == nil {
			return
		}
		select {
		case r := <-s.appends:
			w.add(r)
		case a := <-s.acks:
			w.acks = append(w.acks, a...)
		case u := <-s.updates:
			w.updates = append(w.updates, u)
		case <-deadline:
			return
		case <-s.stop:
			return
		}
	}
}

// commit runs one transaction for w and answers its producers. When the
// appends fail (disk full, I/O error), the acks and releases are retried
// on their own: deleting is how space comes back. Acks that still fail are
// kept for the writer's next turn. It reports whether the acks and
// releases were written.
func (s *SQLiteStore) commit(w *txWork) bool {
	accepted, refused := s.admit(w)
	for _, r := range refused {
		r.req.done <- r.err
	}
	err := s.runTx(accepted, w.acks, w.updates)
	if err != nil && len(accepted) > 0 {
		for _, r := range accepted {
			r.done <- err
		}
		accepted = nil
		if len(w.acks) > 0 || len(w.updates) > 0 {
			err = s.runTx(nil, w.acks, w.updates)
		} else {
			err = nil
		}
	}
	for _, r := range accepted {
		r.done <- nil
	}
	for _, u := range w.updates {
		u.done <- err
	}
	if err != nil {
		s.ackRetry = append(s.ackRetry, w.acks...)
		s.log.Error("store write failed; acks retried with backoff", "path", s.cfg.Path, "acks", len(w.acks), "err", err)
		return false
	}
	return true
}

type refusal struct {
	req *appendReq
	err error
}

// admit applies the bounds: under OverflowRejectNew it refuses requests
// that do not fit; free space below MinFreeBytes refuses all.
func (s *SQLiteStore) admit(w *txWork) (ok []*appendReq, refused []refusal) {
	if len(w.appends) == 0 {
		return nil, nil
	}
	var newBytes int64
	for _, r := range w.appends {
		for _, rec := range r.recs {
			newBytes += int64(len(rec.Payload))
		}
	}
	// Room for the WAL copy and the checkpointed page of each byte.
	if err := s.spaceLeft(3 * newBytes); err != nil {
		for _, r := range w.appends {
			refused = append(refused, refusal{r, err})
		}
		return nil, refused
	}
	if s.cfg.Overflow == OverflowDropOldest {
		return w.appends, nil
	}
	rows, bytes := s.rows.Load(), s.bytes.Load()
	for _, r := range w.appends {
		var b int64
		for _, rec := range r.recs {
			b += int64(len(rec.Payload))
		}
		if rows+int64(len(r.recs)) > s.cfg.MaxRows || bytes+b > s.cfg.MaxBytes {
			refused = append(refused, refusal{r, fmt.Errorf("%w: bound of %d rows / %d bytes reached (%d rows, %d bytes kept)",
				ErrStoreFull, s.cfg.MaxRows, s.cfg.MaxBytes, rows, bytes)})
			continue
		}
		rows += int64(len(r.recs))
		bytes += b
		ok = append(ok, r)
	}
	return ok, refused
}

// classify wraps SQLite errors callers branch on.
func classify(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "disk is full") || strings.Contains(msg, "SQLITE_FULL") || strings.Contains(msg, "no space left"):
		return fmt.Errorf("%w: %v", ErrStoreFull, err)
	case strings.Contains(msg, "disk I/O error") || strings.Contains(msg, "SQLITE_IOERR"):
		return fmt.Errorf("%w: %v", ErrStoreIO, err)
	}
	return err
}

func (s *SQLiteStore) setSync(ctx context.Context, conn *sql.Conn, full bool) error {
	mode := "NORMAL"
	if full {
		mode = string(s.cfg.Synchronous)
	}
	_, err := conn.ExecContext(ctx, "PRAGMA synchronous="+mode)
	return err
}

// runTx writes appends, deletes acks and persists releases in one
// transaction, then updates holds and counters.
func (s *SQLiteStore) runTx(appends []*appendReq, acks []uint64, updates []*releaseReq) (err error) {
	if len(appends) == 0 && len(acks) == 0 && len(updates) == 0 {
		return nil
	}
	ctx := context.Background()
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return classify(fmt.Errorf("resume: sqlite: writer connection: %w", err))
	}
	defer conn.Close()
	// Acks and releases need not reach the disk before returning: losing
	// them replays a record, never loses one. Appends do.
	if err := s.setSync(ctx, conn, len(appends) > 0); err != nil {
		return classify(fmt.Errorf("resume: sqlite: %w", err))
	}
	// Assign sequence numbers and hold the new records before they become
	// visible, so Next cannot hand them out.
	var newSeqs []uint64
	var newBytes int64
	s.mu.Lock()
	for _, r := range appends {
		for i := range r.recs {
			s.counter++
			seq := makeSeq(r.recs[i].Priority, s.counter)
			r.recs[i].Seq = seq
			newSeqs = append(newSeqs, seq)
			newBytes += int64(len(r.recs[i].Payload))
			s.held[seq] = heldRec{size: int32(len(r.recs[i].Payload)), attempts: r.recs[i].Attempts, nextTry: unixNano(r.recs[i].NextTry)}
		}
	}
	s.mu.Unlock()
	defer func() {
		if err != nil {
			s.mu.Lock()
			for _, q := range newSeqs {
				delete(s.held, q)
			}
			s.mu.Unlock()
		}
	}()

	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return classify(fmt.Errorf("resume: sqlite: begin: %w", err))
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := s.insert(ctx, tx, appends); err != nil {
		return err
	}
	ackedRows, ackedBytes, err := s.deleteAcked(ctx, tx, acks)
	if err != nil {
		return err
	}
	evictedRows, evictedBytes, err := s.evict(ctx, tx, int64(len(newSeqs))-ackedRows, newBytes-ackedBytes)
	if err != nil {
		return err
	}
	for _, u := range updates {
		for _, r := range u.recs {
			if _, err := tx.ExecContext(ctx, "UPDATE records SET attempts = ?, next_try = ? WHERE seq = ?",
				int64(r.Attempts), unixNano(r.NextTry), int64(r.Seq)); err != nil {
				return classify(fmt.Errorf("resume: sqlite: release: %w", err))
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return classify(fmt.Errorf("resume: sqlite: commit: %w", err))
	}
	s.commits.Add(1)
	s.committedRecs.Add(int64(len(newSeqs)))
	s.rows.Add(int64(len(newSeqs)) - ackedRows - evictedRows)
	s.bytes.Add(newBytes - ackedBytes - evictedBytes)
	s.mu.Lock()
	for _, q := range acks {
		delete(s.held, q)
	}
	for _, u := range updates {
		for _, r := range u.recs {
			delete(s.held, r.Seq)
			s.cursor = min(s.cursor, r.Seq)
		}
	}
	s.mu.Unlock()
	return nil
}

func (s *SQLiteStore) insert(ctx context.Context, tx *sql.Tx, appends []*appendReq) error {
	if len(appends) == 0 {
		return nil
	}
	args := s.insArgs[:0]
	box := &s.insBox
	box.reset(insertRows * 3)
	n := 0
	var one *sql.Stmt
	flush := func() error {
		if n == 0 {
			return nil
		}
		var err error
		if n == insertRows {
			_, err = tx.StmtContext(ctx, s.insFull).ExecContext(ctx, args...)
		} else {
			if one == nil {
				one = tx.StmtContext(ctx, s.insOne)
			}
			for i := 0; i < n && err == nil; i++ {
				_, err = one.ExecContext(ctx, args[7*i:7*i+7]...)
			}
		}
		clear(args)
		args, n = args[:0], 0
		box.reset(insertRows * 3)
		if err != nil {
			return classify(fmt.Errorf("resume: sqlite: insert: %w", err))
		}
		return nil
	}
	now := time.Now().UnixNano()
	for _, r := range appends {
		var enqV int64
		var enqBox any
		for i := range r.recs {
			rec := &r.recs[i]
			enq := unixNano(rec.Enqueued)
			if enq == 0 {
				enq = now
			}
			if enqBox == nil || enq != enqV { // records of one Append share their time
				enqV, enqBox = enq, box.int64(enq)
			}
			args = append(args, box.int64(int64(rec.Seq)), box.bytes(rec.ID[:]), rec.Sink, box.bytes(rec.Payload),
				int64(rec.Attempts), unixNano(rec.NextTry), enqBox)
			n++
			if n == insertRows {
				if err := flush(); err != nil {
					s.insArgs = args
					return err
				}
				enqBox = nil
			}
		}
	}
	err := flush()
	s.insArgs = args
	return err
}

// insertSQL returns the INSERT statement for n rows.
func insertSQL(n int) string {
	return "INSERT INTO records " + insertCols + " VALUES " + strings.Repeat("(?,?,?,?,?,?,?),", n-1) + "(?,?,?,?,?,?,?)"
}

// deleteAcked removes acked records, a range statement per run of
// consecutive sequence numbers.
func (s *SQLiteStore) deleteAcked(ctx context.Context, tx *sql.Tx, acks []uint64) (rows, bytes int64, err error) {
	if len(acks) == 0 {
		return 0, 0, nil
	}
	var unknown bool
	s.mu.Lock()
	for _, q := range acks {
		h, ok := s.held[q]
		if !ok {
			unknown = true
			continue
		}
		bytes += int64(h.size)
	}
	s.mu.Unlock()
	total := func() (int64, error) {
		var b sql.NullInt64
		err := tx.QueryRowContext(ctx, "SELECT coalesce(sum(length(payload)), 0) FROM records").Scan(&b)
		return b.Int64, err
	}
	var before int64
	if unknown {
		// Acks of records never handed out: measure their bytes (rare).
		if before, err = total(); err != nil {
			return 0, 0, classify(fmt.Errorf("resume: sqlite: ack: %w", err))
		}
	}
	del := tx.StmtContext(ctx, s.delRange)
	for _, rg := range sortedRanges(acks) {
		res, err := del.ExecContext(ctx, int64(rg[0]), int64(rg[1]))
		if err != nil {
			return 0, 0, classify(fmt.Errorf("resume: sqlite: ack: %w", err))
		}
		n, _ := res.RowsAffected()
		rows += n
	}
	if unknown {
		after, err := total()
		if err != nil {
			return 0, 0, classify(fmt.Errorf("resume: sqlite: ack: %w", err))
		}
		bytes = before - after
	}
	return rows, bytes, nil
}

// evict makes room under OverflowDropOldest for addRows/addBytes more:
// oldest records of the lowest priority band first, never held ones.
func (s *SQLiteStore) evict(ctx context.Context, tx *sql.Tx, addRows, addBytes int64) (rows, bytes int64, err error) {
	if s.cfg.Overflow != OverflowDropOldest {
		return 0, 0, nil
	}
	needRows := s.rows.Load() + addRows - s.cfg.MaxRows
	needBytes := s.bytes.Load() + addBytes - s.cfg.MaxBytes
	if needRows <= 0 && needBytes <= 0 {
		return 0, 0, nil
	}
	var victims []uint64
	band := uint64(1) << 8 // above the highest band prefix
	for (rows < needRows || bytes < needBytes) && band > 0 {
		var last int64
		err := tx.QueryRowContext(ctx, "SELECT seq FROM records WHERE seq < ? ORDER BY seq DESC LIMIT 1", int64(band<<seqCounterBits)).Scan(&last)
		if errors.Is(err, sql.ErrNoRows) {
			break
		}
		if err != nil {
			return 0, 0, classify(fmt.Errorf("resume: sqlite: evict: %w", err))
		}
		band = uint64(last) >> seqCounterBits
		rs, err := tx.QueryContext(ctx, "SELECT seq, length(payload) FROM records WHERE seq >= ? AND seq <= ? ORDER BY seq",
			int64(band<<seqCounterBits), last)
		if err != nil {
			return 0, 0, classify(fmt.Errorf("resume: sqlite: evict: %w", err))
		}
		s.mu.Lock()
		for rs.Next() && (rows < needRows || bytes < needBytes) {
			var seq, size int64
			if err := rs.Scan(&seq, &size); err != nil {
				break
			}
			if _, held := s.held[uint64(seq)]; held {
				continue
			}
			victims = append(victims, uint64(seq))
			rows++
			bytes += size
		}
		s.mu.Unlock()
		err = rs.Err()
		rs.Close()
		if err != nil {
			return 0, 0, classify(fmt.Errorf("resume: sqlite: evict: %w", err))
		}
	}
	for _, rg := range sortedRanges(victims) {
		if _, err := tx.ExecContext(ctx, "DELETE FROM records WHERE seq BETWEEN ? AND ?", int64(rg[0]), int64(rg[1])); err != nil {
			return 0, 0, classify(fmt.Errorf("resume: sqlite: evict: %w", err))
		}
	}
	if len(victims) > 0 {
		s.evicted.Add(int64(len(victims)))
		s.log.Warn("store bound reached; evicted oldest records", "count", len(victims), "bytes", bytes,
			"max_rows", s.cfg.MaxRows, "max_bytes", s.cfg.MaxBytes)
	}
	return rows, bytes, nil
}
