package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Heights maps author → log → seq. It is used for log heights (highest stored seq) and for
// ack cursors (highest acknowledged seq).
type Heights map[operation.PublicKey]map[operation.LogID]uint64

// Set records seq for (author, log).
func (h Heights) Set(author operation.PublicKey, log operation.LogID, seq uint64) {
	logs := h[author]
	if logs == nil {
		logs = make(map[operation.LogID]uint64)
		h[author] = logs
	}
	logs[log] = seq
}

// Get returns the seq for (author, log) and whether there is one.
func (h Heights) Get(author operation.PublicKey, log operation.LogID) (uint64, bool) {
	seq, ok := h[author][log]
	return seq, ok
}

// Clone returns a deep copy.
func (h Heights) Clone() Heights {
	out := make(Heights, len(h))
	for a, logs := range h {
		for l, s := range logs {
			out.Set(a, l, s)
		}
	}
	return out
}

func decodeRow(hash, header, body []byte) (*operation.Operation, error) {
	h, err := operation.DecodeHeader(header)
	if err != nil {
		// The store only holds validated operations; this means on-disk corruption.
		return nil, fmt.Errorf("stored operation %x: %w", hash, err)
	}
	if len(body) == 0 {
		body = nil
	}
	return &operation.Operation{Hash: operation.Hash(hash), Header: *h, HeaderBytes: header, Body: body}, nil
}

// Get returns the stored operation with this hash, or ErrNotFound.
func (s *Store) Get(ctx context.Context, hash operation.Hash) (*operation.Operation, error) {
	var header, body []byte
	err := s.r.QueryRowContext(ctx, `SELECT header, body FROM operations WHERE `+hashLookup, hash[:]).Scan(&header, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("get %s: %w", hash.Short(), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", hash.Short(), err)
	}
	return decodeRow(hash[:], header, body)
}

// Has reports whether an operation with this hash is stored.
func (s *Store) Has(ctx context.Context, hash operation.Hash) (bool, error) {
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 FROM operations WHERE `+hashLookup, hash[:]).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("has %s: %w", hash.Short(), err)
	}
	return true, nil
}

// Latest returns the entry with the highest seq of (author, log), or nil if the log is empty.
func (s *Store) Latest(ctx context.Context, author operation.PublicKey, log operation.LogID) (*operation.Operation, error) {
	var hash, header, body []byte
	err := s.r.QueryRowContext(ctx, `SELECT hash, header, body FROM operations WHERE author = ? AND log_id = ?
		ORDER BY seq DESC LIMIT 1`, author[:], log[:]).Scan(&hash, &header, &body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("latest entry of %s: %w", author.Short(), err)
	}
	return decodeRow(hash, header, body)
}

// LogHeights returns the highest stored seq of every log associated with topic.
func (s *Store) LogHeights(ctx context.Context, topic operation.Topic) (Heights, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT t.author, t.log_id,
		(SELECT max(o.seq) FROM operations o WHERE o.author = t.author AND o.log_id = t.log_id)
		FROM topic_logs t WHERE t.topic = ?`, topic[:])
	if err != nil {
		return nil, fmt.Errorf("log heights of %s: %w", topic, err)
	}
	defer rows.Close()
	h := make(Heights)
	for rows.Next() {
		var author, log []byte
		var seq sql.NullInt64
		if err := rows.Scan(&author, &log, &seq); err != nil {
			return nil, fmt.Errorf("log heights of %s: %w", topic, err)
		}
		if seq.Valid {
			h.Set(operation.PublicKey(author), operation.LogID(log), uint64(seq.Int64))
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("log heights of %s: %w", topic, err)
	}
	return h, nil
}

// rangeChunk is how many rows LogRange reads per query, and rangeChunkBytes how many header
// and body bytes (a chunk always holds at least one row, so one operation may exceed it).
// Reading in chunks keeps each read transaction short (WAL checkpoints are not held back,
// and the in-memory store's single connection is free for the writer between chunks) while
// fn runs without a statement open; the byte bound keeps a range of large payloads from
// being held in memory 256 at a time.
const (
	rangeChunk      = 256
	rangeChunkBytes = 1 << 20
)

// LogRange calls fn for every stored entry of (author, log) with fromSeq <= seq <= toSeq,
// in ascending seq order, without loading the range into memory: it reads chunks of at
// most rangeChunk rows and about rangeChunkBytes bytes. Pruned entries are simply absent.
// Returning an error from fn stops the iteration and returns that error.
func (s *Store) LogRange(ctx context.Context, author operation.PublicKey, log operation.LogID, fromSeq, toSeq uint64,
	fn func(*operation.Operation) error) error {
	return s.logRange(ctx, author, log, fromSeq, toSeq, nil, func(r rangeRow) error {
		op, err := decodeRow(r.hash, r.header, r.body)
		if err != nil {
			return err
		}
		return fn(op)
	})
}

// LogRangeRaw is LogRange without decoding: fn gets each entry's header bytes and body (nil
// if absent) as stored, in seq order. Sync sends exactly these bytes, so decoding every
// header (a CBOR parse and a canonical re-encode, ~40 allocations) only to hand the bytes
// on would be wasted; the receiver verifies them anyway. The slices are valid only during
// fn: the next rows reuse their memory (a sender copies them into its frames right away,
// and a fresh copy of every operation it sent was a tenth of a catch-up's allocations).
func (s *Store) LogRangeRaw(ctx context.Context, author operation.PublicKey, log operation.LogID, fromSeq, toSeq uint64,
	fn func(header, body []byte) error) error {
	var arena []byte
	return s.logRange(ctx, author, log, fromSeq, toSeq, &arena, func(r rangeRow) error {
		body := r.body
		if len(body) == 0 {
			body = nil
		}
		return fn(r.header, body)
	})
}

// logRange reads the range chunk by chunk and calls fn for every row. With a nil arena each
// row gets slices of its own that fn may keep; otherwise the rows of a chunk are copied
// into *arena, which the next chunk overwrites.
func (s *Store) logRange(ctx context.Context, author operation.PublicKey, log operation.LogID, fromSeq, toSeq uint64,
	arena *[]byte, fn func(rangeRow) error) error {
	if toSeq > math.MaxInt64 {
		toSeq = math.MaxInt64
	}
	next := fromSeq
	var chunk []rangeRow
	for next <= toSeq {
		var last uint64
		var more bool
		var err error
		chunk, last, more, err = s.readRangeChunk(ctx, author, log, next, toSeq, chunk[:0], arena)
		if err != nil {
			return err
		}
		for _, r := range chunk {
			if err := fn(r); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		next = last + 1
	}
	return nil
}

type rangeRow struct{ hash, header, body []byte }

// readRangeChunk appends to chunk the next entries of a log range, from seq next on, until
// it holds rangeChunk rows or rangeChunkBytes bytes. more reports that the range may go on
// after last, the highest seq read. The rows' bytes are fresh slices, or with a non-nil
// arena, copies in *arena (emptied first).
func (s *Store) readRangeChunk(ctx context.Context, author operation.PublicKey, log operation.LogID, next, toSeq uint64,
	chunk []rangeRow, arena *[]byte) (_ []rangeRow, last uint64, more bool, _ error) {
	rows, err := s.r.QueryContext(ctx, `SELECT hash, header, body, seq FROM operations
		WHERE author = ? AND log_id = ? AND seq >= ? AND seq <= ? ORDER BY seq LIMIT ?`,
		author[:], log[:], int64(next), int64(toSeq), rangeChunk)
	if err != nil {
		return nil, 0, false, fmt.Errorf("log range of %s: %w", author.Short(), err)
	}
	defer rows.Close()
	var seq int64
	size := 0
	var raw [3]sql.RawBytes // hash, header, body: the driver's memory, valid until Next
	if arena != nil {
		*arena = (*arena)[:0]
	}
	for rows.Next() {
		var r rangeRow
		if arena == nil {
			err = rows.Scan(&r.hash, &r.header, &r.body, &seq)
		} else if err = rows.Scan(&raw[0], &raw[1], &raw[2], &seq); err == nil {
			r.hash, r.header, r.body = appendTo(arena, raw[0]), appendTo(arena, raw[1]), appendTo(arena, raw[2])
		}
		if err != nil {
			return nil, 0, false, fmt.Errorf("log range of %s: %w", author.Short(), err)
		}
		chunk = append(chunk, r)
		// Stopping here leaves the rest of the result unread: SQLite steps row by row.
		if size += len(r.header) + len(r.body); size >= rangeChunkBytes {
			more = true
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, false, fmt.Errorf("log range of %s: %w", author.Short(), err)
	}
	return chunk, uint64(seq), more || len(chunk) == rangeChunk, nil
}

// appendTo copies b to the end of *arena and returns the copy; nil stays nil (a missing
// body). Slices returned earlier stay intact when *arena grows: they keep the old array.
func appendTo(arena *[]byte, b []byte) []byte {
	if b == nil {
		return nil
	}
	start := len(*arena)
	*arena = append(*arena, b...)
	return (*arena)[start:len(*arena):len(*arena)]
}

// LogSize summarises the stored entries of a log range.
type LogSize struct {
	Ops int64
	// PayloadOps counts entries with a payload (payload_size > 0), i.e. application
	// messages as opposed to system-only operations.
	PayloadOps int64
	// Bytes is header plus stored body bytes.
	Bytes int64
}

// LogSize summarises the entries of (author, log) with fromSeq <= seq <= toSeq.
func (s *Store) LogSize(ctx context.Context, author operation.PublicKey, log operation.LogID, fromSeq, toSeq uint64) (LogSize, error) {
	if toSeq > math.MaxInt64 {
		toSeq = math.MaxInt64
	}
	var out LogSize
	err := s.r.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(payload_size > 0), 0),
		coalesce(sum(length(header) + coalesce(length(body), 0)), 0)
		FROM operations WHERE author = ? AND log_id = ? AND seq >= ? AND seq <= ?`,
		author[:], log[:], int64(fromSeq), int64(toSeq)).Scan(&out.Ops, &out.PayloadOps, &out.Bytes)
	if err != nil {
		return LogSize{}, fmt.Errorf("log size of %s: %w", author.Short(), err)
	}
	return out, nil
}

// Topics returns every topic with at least one associated log, sorted.
func (s *Store) Topics(ctx context.Context) ([]operation.Topic, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT DISTINCT topic FROM topic_logs ORDER BY topic`)
	if err != nil {
		return nil, fmt.Errorf("topics: %w", err)
	}
	defer rows.Close()
	var out []operation.Topic
	for rows.Next() {
		var t []byte
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("topics: %w", err)
		}
		out = append(out, operation.Topic(t))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("topics: %w", err)
	}
	return out, nil
}

// LogStat describes one log of a topic.
type LogStat struct {
	Author operation.PublicKey
	Log    operation.LogID
	Height uint64 // highest stored seq
	Ops    int64  // stored entries (fewer than Height+1 after pruning)
	Bytes  int64
}

// TopicStat describes one topic.
type TopicStat struct {
	Topic   operation.Topic
	Ops     int64
	Bytes   int64
	Authors int
	Logs    []LogStat
}

// TopicStats returns statistics for every topic, sorted by topic. It scans the operations
// of all topics and is meant for admin and metrics endpoints, not hot paths.
func (s *Store) TopicStats(ctx context.Context) ([]TopicStat, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT t.topic, t.author, t.log_id, max(o.seq), count(o.seq),
		coalesce(sum(length(o.header) + coalesce(length(o.body), 0)), 0)
		FROM topic_logs t JOIN operations o ON o.author = t.author AND o.log_id = t.log_id
		GROUP BY t.topic, t.author, t.log_id ORDER BY t.topic, t.author, t.log_id`)
	if err != nil {
		return nil, fmt.Errorf("topic stats: %w", err)
	}
	defer rows.Close()
	var out []TopicStat
	authors := map[operation.PublicKey]struct{}{}
	for rows.Next() {
		var topic, author, log []byte
		var ls LogStat
		var height int64
		if err := rows.Scan(&topic, &author, &log, &height, &ls.Ops, &ls.Bytes); err != nil {
			return nil, fmt.Errorf("topic stats: %w", err)
		}
		ls.Author, ls.Log, ls.Height = operation.PublicKey(author), operation.LogID(log), uint64(height)
		if len(out) == 0 || out[len(out)-1].Topic != operation.Topic(topic) {
			out = append(out, TopicStat{Topic: operation.Topic(topic)})
			clear(authors)
		}
		ts := &out[len(out)-1]
		ts.Logs = append(ts.Logs, ls)
		ts.Ops += ls.Ops
		ts.Bytes += ls.Bytes
		if _, ok := authors[ls.Author]; !ok {
			authors[ls.Author] = struct{}{}
			ts.Authors++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("topic stats: %w", err)
	}
	return out, nil
}

// Cursor returns the ack cursor of topic: per log, the highest acknowledged seq. Logs never
// acknowledged are absent.
func (s *Store) Cursor(ctx context.Context, topic operation.Topic) (Heights, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT author, log_id, seq FROM ack_cursors WHERE topic = ?`, topic[:])
	if err != nil {
		return nil, fmt.Errorf("cursor of %s: %w", topic, err)
	}
	defer rows.Close()
	h := make(Heights)
	for rows.Next() {
		var author, log []byte
		var seq int64
		if err := rows.Scan(&author, &log, &seq); err != nil {
			return nil, fmt.Errorf("cursor of %s: %w", topic, err)
		}
		h.Set(operation.PublicKey(author), operation.LogID(log), uint64(seq))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("cursor of %s: %w", topic, err)
	}
	return h, nil
}

// Ack raises topic's cursor for (author, log) to seq in its own transaction. The cursor never
// moves backwards. Acking seq n implicitly acknowledges every lower seq of that log.
// High-volume callers should batch acks through Write instead.
func (s *Store) Ack(ctx context.Context, topic operation.Topic, author operation.PublicKey, log operation.LogID, seq uint64) error {
	if _, err := s.w.ExecContext(ctx, ackSQL, topic[:], author[:], log[:], int64(seq)); err != nil {
		return fmt.Errorf("ack %s seq %d: %w", author.Short(), seq, err)
	}
	return nil
}

// ResetCursor replaces topic's cursor with c (nil or empty: nothing acknowledged). Unlike
// Ack it may move the cursor backwards.
func (s *Store) ResetCursor(ctx context.Context, topic operation.Topic, c Heights) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("reset cursor of %s: %w", topic, err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if _, err := tx.ExecContext(ctx, `DELETE FROM ack_cursors WHERE topic = ?`, topic[:]); err != nil {
		return fmt.Errorf("reset cursor of %s: %w", topic, err)
	}
	// Sorted for deterministic write order (and therefore reproducible database files).
	type entry struct {
		a operation.PublicKey
		l operation.LogID
		s uint64
	}
	var entries []entry
	for a, logs := range c {
		for l, seq := range logs {
			entries = append(entries, entry{a, l, seq})
		}
	}
	sort.Slice(entries, func(i, j int) bool {
		if entries[i].a != entries[j].a {
			return string(entries[i].a[:]) < string(entries[j].a[:])
		}
		return string(entries[i].l[:]) < string(entries[j].l[:])
	})
	for _, e := range entries {
		if _, err := tx.ExecContext(ctx, `INSERT INTO ack_cursors (topic, author, log_id, seq) VALUES (?, ?, ?, ?)`,
			topic[:], e.a[:], e.l[:], int64(e.s)); err != nil {
			return fmt.Errorf("reset cursor of %s: %w", topic, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("reset cursor of %s: %w", topic, err)
	}
	return nil
}
