package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/pandanet/pandanet/pkg/operation"
)

func TestPeersRoundTripAndReplace(t *testing.T) {
	ctx := context.Background()
	for name, s := range openStores(t) {
		t.Run(name, func(t *testing.T) {
			if got, err := s.LoadPeers(ctx); err != nil || len(got) != 0 {
				t.Fatalf("empty book = %v, %v", got, err)
			}
			now := time.UnixMilli(time.Now().UnixMilli())
			want := []Peer{
				{ID: "12D3KooWA", Record: []byte{1, 2, 3}, LastSucceeded: now},
				{ID: "12D3KooWB", Record: []byte{4}, LastFailed: now.Add(-time.Minute)},
			}
			if err := s.SavePeers(ctx, want); err != nil {
				t.Fatal(err)
			}
			got, err := s.LoadPeers(ctx)
			if err != nil || len(got) != 2 {
				t.Fatalf("load = %v, %v", got, err)
			}
			for i := range want {
				g, w := got[i], want[i]
				if g.ID != w.ID || string(g.Record) != string(w.Record) || !g.LastSucceeded.Equal(w.LastSucceeded) || !g.LastFailed.Equal(w.LastFailed) {
					t.Errorf("peer %d = %+v, want %+v", i, g, w)
				}
			}
			// Saving is a snapshot: peers missing from it are gone.
			if err := s.SavePeers(ctx, want[1:]); err != nil {
				t.Fatal(err)
			}
			if got, _ := s.LoadPeers(ctx); len(got) != 1 || got[0].ID != "12D3KooWB" {
				t.Fatalf("after replace = %+v", got)
			}
		})
	}
}

// A database written by the first schema (no address book) is upgraded in place and keeps
// its operations.
func TestUpgradeFromSchema1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "db.sqlite")
	s := openFile(t, path)
	key := newKey(t)
	if _, err := s.InsertBatch(ctx, inserts(topicA, chain(t, key, topicA, nil, 2, nil)...)); err != nil {
		t.Fatal(err)
	}
	// Turn the file back into a schema-1 database.
	if _, err := s.w.ExecContext(ctx, `DROP TABLE peers; DROP TABLE retired_logs; DROP TRIGGER operations_drop_hash;
		DROP TABLE operation_hashes; DROP TABLE operation_hashes_mid; DROP TABLE operation_hashes_recent; PRAGMA user_version = 1`); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openFile(t, path)
	defer s.Close()
	if h, _ := s.LogHeights(ctx, topicA); h[key.PublicKey()][operation.LogIDFromTopic(topicA)] != 1 {
		t.Fatalf("heights after the upgrade = %v", h)
	}
	if err := s.SavePeers(ctx, []Peer{{ID: "p", Record: []byte{1}}}); err != nil {
		t.Fatalf("address book after the upgrade: %v", err)
	}
	if err := s.IntegrityCheck(ctx); err != nil {
		t.Fatal(err)
	}
}
