package p2p

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/record"

	"github.com/pandanet/pandanet/pkg/store"
)

// AddressStore persists the address book (p2panda keeps it in SQLite too). *store.Store
// implements it.
type AddressStore interface {
	LoadPeers(ctx context.Context) ([]store.Peer, error)
	SavePeers(ctx context.Context, peers []store.Peer) error
}

// addressSaveInterval is how often the address book is written; Close writes it too, so
// only a crash loses what was learned since the last save.
const addressSaveInterval = time.Minute

// loadAddressBook restores persisted peers: each signed peer record is verified again
// (the database is not trusted more than a peer) and its addresses enter the certified
// address book; the peers become random-walk candidates. A bad entry is skipped.
func (p *Host) loadAddressBook(ctx context.Context) (int, error) {
	peers, err := p.cfg.AddressStore.LoadPeers(ctx)
	if err != nil {
		return 0, fmt.Errorf("load address book: %w", err)
	}
	cab, ok := peerstore.GetCertifiedAddrBook(p.h.Peerstore())
	if !ok {
		return 0, errors.New("load address book: peerstore has no certified address book")
	}
	restored := 0
	for _, sp := range peers {
		env, rec, err := record.ConsumeEnvelope(sp.Record, peer.PeerRecordEnvelopeDomain)
		if err != nil {
			p.log.Warn("address book: skipping an invalid stored record", "peer", sp.ID, "err", err)
			continue
		}
		pr, ok := rec.(*peer.PeerRecord)
		if !ok || pr.PeerID.String() != sp.ID || pr.PeerID == p.h.ID() {
			p.log.Warn("address book: skipping a stored record of another peer", "peer", sp.ID)
			continue
		}
		if _, err := cab.ConsumePeerRecord(env, peerstore.AddressTTL); err != nil {
			p.log.Warn("address book: skipping a stored record", "peer", sp.ID, "err", err)
			continue
		}
		p.book.restore(pr.PeerID, sp.LastSucceeded, sp.LastFailed)
		restored++
	}
	return restored, nil
}

// saveAddressBook writes every known peer that has a signed peer record.
func (p *Host) saveAddressBook(ctx context.Context) error {
	cab, ok := peerstore.GetCertifiedAddrBook(p.h.Peerstore())
	if !ok {
		return errors.New("save address book: peerstore has no certified address book")
	}
	var out []store.Peer
	for _, e := range p.book.snapshot() {
		env := cab.GetPeerRecord(e.id)
		if env == nil {
			continue // only authenticated addresses are kept, as p2panda shares only those
		}
		data, err := env.Marshal()
		if err != nil || len(data) > maxRecordSize {
			continue
		}
		out = append(out, store.Peer{ID: e.id.String(), Record: data, LastSucceeded: e.lastSucceeded, LastFailed: e.lastFailed})
	}
	if err := p.cfg.AddressStore.SavePeers(ctx, out); err != nil {
		return fmt.Errorf("save address book: %w", err)
	}
	return nil
}

// persistLoop saves the address book every addressSaveInterval until the host closes.
func (p *Host) persistLoop() {
	defer p.wg.Done()
	t := time.NewTicker(addressSaveInterval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
			if err := p.saveAddressBook(ctx); err != nil && p.ctx.Err() == nil {
				p.log.Warn("address book not saved", "err", err)
			}
			cancel()
		}
	}
}
