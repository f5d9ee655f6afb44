package resume

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/iotgw/gateway"
)

// The dead_letter table keeps frames their codec could not decode (see
// gateway.DeadLetterStore): the raw bytes with connector, device, topic,
// codec, error and times, keyed by an increasing seq, one row per frame
// ID. It is apart from the queue: dead letters are not replayed on their
// own, do not count towards MaxRows and MaxBytes, and stay until deleted
// (gateway.Gateway.ReplayDeadLetters or DeleteDeadLetters). Writing one
// respects the MinFreeBytes guard.

// PutDeadLetters implements gateway.DeadLetterStore: one transaction,
// synced like an Append, a letter replacing any stored one of its ID.
func (s *SQLiteStore) PutDeadLetters(ctx context.Context, dls []gateway.DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	leave, err := s.enter()
	if err != nil {
		return err
	}
	defer leave()
	var size int64
	for _, dl := range dls {
		size += int64(len(dl.Payload))
	}
	if err := s.spaceLeft(3 * size); err != nil {
		return fmt.Errorf("resume: sqlite: dead letter: %w", err)
	}
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return classify(fmt.Errorf("resume: sqlite: dead letter: %w", err))
	}
	defer conn.Close()
	if err := s.setSync(ctx, conn, true); err != nil {
		return classify(fmt.Errorf("resume: sqlite: dead letter: %w", err))
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return classify(fmt.Errorf("resume: sqlite: dead letter: begin: %w", err))
	}
	defer func() { _ = tx.Rollback() }()
	for i := range dls {
		dl := &dls[i]
		var seq int64
		err := tx.QueryRowContext(ctx, `INSERT OR REPLACE INTO dead_letter
			(id, connector, device, topic, codec, error, received, failed, payload)
			VALUES (?,?,?,?,?,?,?,?,?) RETURNING seq`,
			dl.ID[:], dl.Connector, dl.Device, dl.Topic, dl.Codec, dl.Err,
			unixNano(dl.Received), unixNano(dl.Failed), dl.Payload).Scan(&seq)
		if err != nil {
			return classify(fmt.Errorf("resume: sqlite: dead letter: insert: %w", err))
		}
		dl.Seq = uint64(seq)
	}
	if err := tx.Commit(); err != nil {
		return classify(fmt.Errorf("resume: sqlite: dead letter: commit: %w", err))
	}
	return nil
}

// DeadLetters implements gateway.DeadLetterStore.
func (s *SQLiteStore) DeadLetters(ctx context.Context, after uint64, max int) ([]gateway.DeadLetter, error) {
	if max <= 0 {
		return nil, nil
	}
	leave, err := s.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	rows, err := s.db.QueryContext(ctx, `SELECT seq, id, connector, device, topic, codec, error, received, failed, payload
		FROM dead_letter WHERE seq > ? ORDER BY seq LIMIT ?`, int64(after), max)
	if err != nil {
		return nil, fmt.Errorf("resume: sqlite: dead letters: %w", err)
	}
	defer rows.Close()
	var out []gateway.DeadLetter
	for rows.Next() {
		var (
			dl            gateway.DeadLetter
			seq, rec, fai int64
			id            []byte
			payload       sql.RawBytes
		)
		if err := rows.Scan(&seq, &id, &dl.Connector, &dl.Device, &dl.Topic, &dl.Codec, &dl.Err, &rec, &fai, &payload); err != nil {
			return nil, fmt.Errorf("resume: sqlite: dead letters: %w", err)
		}
		dl.Seq = uint64(seq)
		copy(dl.ID[:], id)
		dl.Received, dl.Failed = fromUnixNano(rec), fromUnixNano(fai)
		dl.Payload = append([]byte{}, payload...)
		out = append(out, dl)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("resume: sqlite: dead letters: %w", err)
	}
	return out, nil
}

// DeleteDeadLetters implements gateway.DeadLetterStore.
func (s *SQLiteStore) DeleteDeadLetters(ctx context.Context, seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	leave, err := s.enter()
	if err != nil {
		return err
	}
	defer leave()
	for _, rg := range sortedRanges(append([]uint64(nil), seqs...)) {
		if _, err := s.wdb.ExecContext(ctx, "DELETE FROM dead_letter WHERE seq BETWEEN ? AND ?", int64(rg[0]), int64(rg[1])); err != nil {
			return classify(fmt.Errorf("resume: sqlite: delete dead letters: %w", err))
		}
	}
	return nil
}
