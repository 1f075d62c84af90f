package p2p

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// keeper keeps a set of peers connected: a peer that is not connected is dialed when it is
// due, and every failure doubles its backoff (with jitter, so peers that found each other
// at the same moment do not keep dialing in lockstep). Bootstrap peers are kept forever;
// peers found on the LAN only while mDNS keeps seeing them.
type keeper struct {
	p          *Host
	name       string
	minBackoff time.Duration
	maxBackoff time.Duration

	mu    sync.Mutex
	peers map[peer.ID]*keptPeer
	kick  chan struct{}

	// rounds counts finished looks at the kept peers and failedDials the dials that
	// failed, so tests can wait for the keeper to have acted instead of sleeping.
	rounds      atomic.Uint64
	failedDials atomic.Uint64
}

type keptPeer struct {
	info    peer.AddrInfo
	backoff time.Duration
	next    time.Time
	// expires is when the peer is forgotten; zero keeps it forever.
	expires time.Time
}

func newKeeper(p *Host, name string, minBackoff, maxBackoff time.Duration) *keeper {
	return &keeper{p: p, name: name, minBackoff: minBackoff, maxBackoff: maxBackoff,
		peers: make(map[peer.ID]*keptPeer), kick: make(chan struct{}, 1)}
}

// keep adds a peer or refreshes its addresses and reports whether it was new. The first
// dial is due after delay; ttl > 0 forgets the peer ttl after the last call to keep for it.
func (k *keeper) keep(ai peer.AddrInfo, delay, ttl time.Duration) bool {
	now := time.Now()
	k.mu.Lock()
	kp, ok := k.peers[ai.ID]
	if !ok {
		kp = &keptPeer{next: now.Add(delay)}
		k.peers[ai.ID] = kp
	}
	kp.info = ai
	if ttl > 0 {
		kp.expires = now.Add(ttl)
	}
	k.mu.Unlock()
	k.wake()
	return !ok
}

// forget stops keeping a peer connected (an open connection stays until trimmed).
func (k *keeper) forget(id peer.ID) {
	k.mu.Lock()
	delete(k.peers, id)
	k.mu.Unlock()
}

// has reports whether the peer is kept.
func (k *keeper) has(id peer.ID) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.peers[id]
	return ok
}

// ids lists the kept peers.
func (k *keeper) ids() []peer.ID {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]peer.ID, 0, len(k.peers))
	for id := range k.peers {
		out = append(out, id)
	}
	return out
}

// wake makes the loop look at its peers now.
func (k *keeper) wake() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

// loop runs until the host closes; tick bounds how late a due dial starts.
func (k *keeper) loop(tick time.Duration) {
	defer k.p.wg.Done()
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		k.dialDue()
		select {
		case <-k.p.ctx.Done():
			return
		case <-t.C:
		case <-k.kick:
		}
	}
}

// dialDue dials every kept peer that is not connected and whose backoff has passed, in
// parallel, and waits for the dials to end.
func (k *keeper) dialDue() {
	now := time.Now()
	k.mu.Lock()
	var due []*keptPeer
	for id, kp := range k.peers {
		if !kp.expires.IsZero() && now.After(kp.expires) {
			delete(k.peers, id)
			continue
		}
		if k.p.h.Network().Connectedness(id) == network.Connected {
			kp.backoff = 0
			continue
		}
		if now.Before(kp.next) {
			continue
		}
		due = append(due, kp)
	}
	k.mu.Unlock()
	var wg sync.WaitGroup
	for _, kp := range due {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(k.p.ctx, 15*time.Second)
			defer cancel()
			err := k.p.h.Connect(ctx, kp.info)
			k.mu.Lock()
			defer k.mu.Unlock()
			if err == nil {
				kp.backoff = 0
				return
			}
			k.failedDials.Add(1)
			kp.backoff = min(max(2*kp.backoff, k.minBackoff), k.maxBackoff)
			kp.next = time.Now().Add(jitter(kp.backoff))
			if k.p.ctx.Err() == nil {
				k.p.log.Debug(k.name+" dial failed", "peer", kp.info.ID, "retry_in", kp.backoff, "err", err)
			}
		})
	}
	wg.Wait()
	k.rounds.Add(1)
}
