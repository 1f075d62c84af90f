package store

import (
	"context"
	"database/sql"
	"fmt"
)

// maxCachedHeads bounds headCache: ~100 bytes per log, so ~1.6 MiB. A store with more
// active logs than that reads the rest from the database, as before the cache.
const maxCachedHeads = 16_384

// headCache remembers the latest entry of logs across write batches. Without it every batch
// read the latest entry of every log it touched from the database: ingesting 64 logs in
// batches of ~200 operations, that was a sixth of the writer's time.
//
// It is only as good as its assumption that nothing else changed those logs, so it is
// checked two ways:
//   - this store's own deletes of whole logs (RetireLogs) forget them, under the store's
//     write lock (Store.writeMu), which guards the cache;
//   - a commit by any other connection, another process included, changes SQLite's
//     data_version, and a write that sees it changed forgets everything.
//
// Entries are added only after the batch that made them committed.
type headCache struct {
	dataVersion int64 // 0: not read yet
	heads       map[logKey]*latestEntry
}

// valid checks data_version inside the write transaction tx and empties the cache when
// another connection committed since the last check.
func (c *headCache) valid(ctx context.Context, tx *sql.Tx, stmt *sql.Stmt) error {
	var v int64
	if err := tx.StmtContext(ctx, stmt).QueryRowContext(ctx).Scan(&v); err != nil {
		return fmt.Errorf("write batch: data version: %w", err)
	}
	if v != c.dataVersion {
		clear(c.heads)
		c.dataVersion = v
	}
	return nil
}

// get returns a copy of the cached latest entry of k (nil for an empty log), and whether
// it was cached.
func (c *headCache) get(k logKey) (*latestEntry, bool) {
	e, ok := c.heads[k]
	if !ok || e == nil {
		return nil, ok
	}
	cp := *e
	return &cp, true
}

// remember keeps the latest entries of a committed batch.
func (c *headCache) remember(latest map[logKey]*latestEntry) {
	if c.heads == nil {
		c.heads = make(map[logKey]*latestEntry, len(latest))
	}
	for k, e := range latest {
		if len(c.heads) >= maxCachedHeads {
			if _, ok := c.heads[k]; !ok {
				for old := range c.heads { // make room: forget one (an arbitrary one)
					delete(c.heads, old)
					break
				}
			}
		}
		if e != nil {
			cp := *e
			e = &cp
		}
		c.heads[k] = e
	}
}

// forget drops what the cache knows, after a failed commit or a delete of whole logs.
func (c *headCache) forget(keys ...logKey) {
	if keys == nil {
		clear(c.heads)
		return
	}
	for _, k := range keys {
		delete(c.heads, k)
	}
}
