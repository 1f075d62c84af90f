package store

import (
	"context"
	"fmt"
	"time"
)

// Peer is one address book entry: a peer, its signed peer record (a libp2p envelope the
// peer signed; the store does not interpret it) and when it was last reached or missed.
type Peer struct {
	ID            string
	Record        []byte
	LastSucceeded time.Time // zero: never
	LastFailed    time.Time // zero: never
}

// SavePeers replaces the stored address book with peers in one transaction, so the table
// never holds more than the in-memory book it mirrors.
func (s *Store) SavePeers(ctx context.Context, peers []Peer) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save peers: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	if _, err := tx.ExecContext(ctx, `DELETE FROM peers`); err != nil {
		return fmt.Errorf("save peers: %w", err)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT OR REPLACE INTO peers (peer_id, record, last_succeeded, last_failed) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return fmt.Errorf("save peers: %w", err)
	}
	defer stmt.Close()
	for _, p := range peers {
		if _, err := stmt.ExecContext(ctx, p.ID, p.Record, unixMilli(p.LastSucceeded), unixMilli(p.LastFailed)); err != nil {
			return fmt.Errorf("save peer %s: %w", p.ID, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save peers: commit: %w", err)
	}
	return nil
}

// LoadPeers returns the stored address book.
func (s *Store) LoadPeers(ctx context.Context) ([]Peer, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT peer_id, record, last_succeeded, last_failed FROM peers ORDER BY peer_id`)
	if err != nil {
		return nil, fmt.Errorf("load peers: %w", err)
	}
	defer rows.Close()
	var out []Peer
	for rows.Next() {
		var p Peer
		var ok, failed int64
		if err := rows.Scan(&p.ID, &p.Record, &ok, &failed); err != nil {
			return nil, fmt.Errorf("load peers: %w", err)
		}
		p.LastSucceeded, p.LastFailed = fromUnixMilli(ok), fromUnixMilli(failed)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("load peers: %w", err)
	}
	return out, nil
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromUnixMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
