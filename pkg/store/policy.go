package store

import (
	"context"
	"fmt"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Usage is what a topic, or one author in it, occupies in the store: entries and their
// header plus body bytes (the same measure as LogSize).
type Usage struct {
	Ops   uint64
	Bytes uint64
}

// Add returns u plus v.
func (u Usage) Add(v Usage) Usage { return Usage{Ops: u.Ops + v.Ops, Bytes: u.Bytes + v.Bytes} }

// Sub returns u minus v, floored at zero.
func (u Usage) Sub(v Usage) Usage {
	out := Usage{}
	if u.Ops > v.Ops {
		out.Ops = u.Ops - v.Ops
	}
	if u.Bytes > v.Bytes {
		out.Bytes = u.Bytes - v.Bytes
	}
	return out
}

// AuthorUsage returns, per author, the stored entries and bytes of the topic's logs. It reads
// every entry of the topic once; policy enforcement calls it when a policy is installed and
// keeps the numbers up to date incrementally afterwards.
func (s *Store) AuthorUsage(ctx context.Context, topic operation.Topic) (map[operation.PublicKey]Usage, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT t.author, count(o.seq),
		coalesce(sum(length(o.header) + coalesce(length(o.body), 0)), 0)
		FROM topic_logs t JOIN operations o ON o.author = t.author AND o.log_id = t.log_id
		WHERE t.topic = ? GROUP BY t.author`, topic[:])
	if err != nil {
		return nil, fmt.Errorf("usage of %s: %w", topic, err)
	}
	defer rows.Close()
	out := make(map[operation.PublicKey]Usage)
	for rows.Next() {
		var author []byte
		var ops, bytes int64
		if err := rows.Scan(&author, &ops, &bytes); err != nil {
			return nil, fmt.Errorf("usage of %s: %w", topic, err)
		}
		out[operation.PublicKey(author)] = Usage{Ops: uint64(ops), Bytes: uint64(bytes)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("usage of %s: %w", topic, err)
	}
	return out, nil
}

// LogUsage returns the stored entries and bytes of one log (an index range read).
func (s *Store) LogUsage(ctx context.Context, author operation.PublicKey, log operation.LogID) (Usage, error) {
	sz, err := s.LogSize(ctx, author, log, 0, ^uint64(0))
	if err != nil {
		return Usage{}, err
	}
	return Usage{Ops: uint64(sz.Ops), Bytes: uint64(sz.Bytes)}, nil
}

// LogAge describes one log of a topic for retention: its size and the author-claimed
// timestamp (microseconds since the UNIX epoch) of its newest entry.
type LogAge struct {
	Author operation.PublicKey
	Log    operation.LogID
	Height uint64
	Newest uint64
	Usage  Usage
}

// LogsByAge returns the topic's logs, least recently written first (ties broken by author).
// It reads every entry of the topic; retention runs it only when a limit is exceeded or on
// its periodic age check.
func (s *Store) LogsByAge(ctx context.Context, topic operation.Topic) ([]LogAge, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT t.author, t.log_id, max(o.seq), max(o.timestamp), count(o.seq),
		coalesce(sum(length(o.header) + coalesce(length(o.body), 0)), 0)
		FROM topic_logs t JOIN operations o ON o.author = t.author AND o.log_id = t.log_id
		WHERE t.topic = ? GROUP BY t.author, t.log_id ORDER BY max(o.timestamp), t.author`, topic[:])
	if err != nil {
		return nil, fmt.Errorf("logs by age of %s: %w", topic, err)
	}
	defer rows.Close()
	var out []LogAge
	for rows.Next() {
		var author, log []byte
		var height, newest, ops, bytes int64
		if err := rows.Scan(&author, &log, &height, &newest, &ops, &bytes); err != nil {
			return nil, fmt.Errorf("logs by age of %s: %w", topic, err)
		}
		out = append(out, LogAge{Author: operation.PublicKey(author), Log: operation.LogID(log),
			Height: uint64(height), Newest: uint64(newest), Usage: Usage{Ops: uint64(ops), Bytes: uint64(bytes)}})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("logs by age of %s: %w", topic, err)
	}
	return out, nil
}

// RetiredLog is a log that retention dropped, up to and including Seq.
type RetiredLog struct {
	Author operation.PublicKey
	Log    operation.LogID
	Seq    uint64
}

// RetireLogs deletes whole logs of a topic in one transaction, with their topic association
// and ack cursors, and records them as retired so they are not accepted again. Deleting
// whole logs (never a prefix) keeps every log the store still serves free of holes.
func (s *Store) RetireLogs(ctx context.Context, topic operation.Topic, logs []RetiredLog) error {
	if len(logs) == 0 {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	// Forgotten whether or not the commit succeeds: either way the cache may not know.
	defer func() {
		for _, l := range logs {
			s.heads.forget(logKey{l.Author, l.Log})
		}
	}()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("retire logs: begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	for _, l := range logs {
		if _, err := tx.ExecContext(ctx, `DELETE FROM operations WHERE author = ? AND log_id = ?`, l.Author[:], l.Log[:]); err != nil {
			return fmt.Errorf("retire log %s: %w", l.Author.Short(), err)
		}
		for _, q := range []string{
			`DELETE FROM topic_logs WHERE topic = ? AND author = ? AND log_id = ?`,
			`DELETE FROM ack_cursors WHERE topic = ? AND author = ? AND log_id = ?`,
		} {
			if _, err := tx.ExecContext(ctx, q, topic[:], l.Author[:], l.Log[:]); err != nil {
				return fmt.Errorf("retire log %s: %w", l.Author.Short(), err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO retired_logs (topic, author, log_id, seq) VALUES (?, ?, ?, ?)
			ON CONFLICT (topic, author, log_id) DO UPDATE SET seq = max(seq, excluded.seq)`,
			topic[:], l.Author[:], l.Log[:], int64(l.Seq)); err != nil {
			return fmt.Errorf("retire log %s: %w", l.Author.Short(), err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("retire logs: commit: %w", err)
	}
	return nil
}

// RetiredLogs returns the logs of topic that retention dropped.
func (s *Store) RetiredLogs(ctx context.Context, topic operation.Topic) ([]RetiredLog, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT author, log_id, seq FROM retired_logs WHERE topic = ?`, topic[:])
	if err != nil {
		return nil, fmt.Errorf("retired logs of %s: %w", topic, err)
	}
	defer rows.Close()
	var out []RetiredLog
	for rows.Next() {
		var author, log []byte
		var seq int64
		if err := rows.Scan(&author, &log, &seq); err != nil {
			return nil, fmt.Errorf("retired logs of %s: %w", topic, err)
		}
		out = append(out, RetiredLog{Author: operation.PublicKey(author), Log: operation.LogID(log), Seq: uint64(seq)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("retired logs of %s: %w", topic, err)
	}
	return out, nil
}
