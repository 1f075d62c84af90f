package p2p

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/record"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/pandanet/pandanet/pkg/operation"
)

const (
	// discoverySessionTimeout bounds a whole session (p2panda has none; a stalled peer
	// would otherwise pin a walker forever).
	discoverySessionTimeout        = 10 * time.Second
	maxConcurrentDiscoverySessions = 16
	// emptyBookDelay is how long a walker sleeps when it knows nobody (as p2panda).
	emptyBookDelay = 2 * time.Second
)

func (p *Host) discoveryProtocol() protocol.ID { return p.ProtocolID("discovery/1") }

// discoveryResult is what one session yielded.
type discoveryResult struct {
	shared  []operation.Topic
	learned []peer.ID // peers whose records we received
	newInfo int       // records that told us something new
}

// Discover runs one discovery session with a peer (dialling it if needed): private topic
// intersection, then exchange of signed peer records. The walk calls it; it is exported for
// the node's tests and admin tooling.
func (p *Host) Discover(ctx context.Context, id peer.ID) (shared []operation.Topic, err error) {
	res, err := p.discover(ctx, id)
	if err != nil {
		return nil, err
	}
	return res.shared, nil
}

func (p *Host) discover(ctx context.Context, id peer.ID) (*discoveryResult, error) {
	ctx, cancel := context.WithTimeout(ctx, discoverySessionTimeout)
	defer cancel()
	if p.h.Network().Connectedness(id) != network.Connected {
		if err := p.h.Connect(ctx, peer.AddrInfo{ID: id}); err != nil {
			return nil, fmt.Errorf("discovery with %s: %w", id, err)
		}
	}
	s, err := p.h.NewStream(network.WithAllowLimitedConn(ctx, "discovery"), id, p.discoveryProtocol())
	if err != nil {
		return nil, fmt.Errorf("discovery with %s: open stream: %w", id, err)
	}
	start := time.Now()
	p.events.emit(DiscoverySessionStarted{Peer: id, Role: RoleInitiated})
	res, err := p.runSession(ctx, s, RoleInitiated)
	p.finishSession(id, RoleInitiated, start, res, err)
	if err != nil {
		return nil, fmt.Errorf("discovery with %s: %w", id, err)
	}
	return res, nil
}

func (p *Host) handleDiscovery(s network.Stream) {
	select {
	case p.discSem <- struct{}{}:
		defer func() { <-p.discSem }()
	default:
		_ = s.Reset() // overloaded; the walker will come back later
		return
	}
	id := s.Conn().RemotePeer()
	ctx, cancel := context.WithTimeout(p.ctx, discoverySessionTimeout)
	defer cancel()
	start := time.Now()
	p.events.emit(DiscoverySessionStarted{Peer: id, Role: RoleAccepted})
	res, err := p.runSession(ctx, s, RoleAccepted)
	p.finishSession(id, RoleAccepted, start, res, err)
}

func (p *Host) finishSession(id peer.ID, role Role, start time.Time, res *discoveryResult, err error) {
	d := time.Since(start)
	if err != nil {
		if p.ctx.Err() == nil {
			p.log.Debug("discovery session failed", "peer", id, "role", role, "err", err)
		}
		p.events.emit(DiscoverySessionFailed{Peer: id, Role: role, Duration: d, Err: err})
		return
	}
	p.book.add(id, false)
	p.book.succeeded(id)
	added := p.topicPeers.replacePeer(id, res.shared)
	if len(res.shared) > 0 {
		// keep connections to peers we sync with; weight by how much we share
		p.h.ConnManager().TagPeer(id, tagTopic, min(10*len(res.shared), 100))
	} else {
		p.h.ConnManager().UntagPeer(id, tagTopic)
	}
	p.events.emit(DiscoverySessionEnded{Peer: id, Role: role, Topics: len(res.shared), Records: len(res.learned), Duration: d})
	// Only pairs this session found new: a node following thousands of topics would
	// otherwise emit thousands of events per session and overflow every subscriber.
	for _, t := range added {
		p.events.emit(TopicPeer{Topic: t, Peer: id})
	}
}

// runSession runs the PSI exchange and record exchange; Alice is the initiator.
func (p *Host) runSession(ctx context.Context, s network.Stream, role Role) (res *discoveryResult, err error) {
	defer func() {
		if err != nil {
			_ = s.Reset()
		} else {
			_ = s.Close()
		}
	}()
	deadline, _ := ctx.Deadline()
	if err := s.SetDeadline(deadline); err != nil {
		return nil, fmt.Errorf("set deadline: %w", err)
	}
	// The stream deadline covers blocking reads; ctx cancellation (host close) resets it.
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()

	remote := s.Conn().RemotePeer()
	r := bufio.NewReader(s)
	ours := p.topics.list()
	var alice, bob saltHalf
	res = &discoveryResult{}

	if role == RoleInitiated {
		if _, err := rand.Read(alice[:]); err != nil {
			return nil, err
		}
		if err := writeFrame(s, &discMessage{Kind: msgAliceSalt, Salt: alice[:]}); err != nil {
			return nil, err
		}
		m, err := readFrame(r, msgBobSaltHashes)
		if err != nil {
			return nil, err
		}
		bob = saltHalf(m.Salt)
		res.shared = psiIntersect(ours, m.hashes(), alice, bob, psiRoleBob)
		if err := writeFrame(s, &discMessage{Kind: msgAliceHashes, Hashes: hashesToWire(psiHashes(ours, alice, bob, psiRoleAlice))}); err != nil {
			return nil, err
		}
		m, err = readFrame(r, msgRecords)
		if err != nil {
			return nil, err
		}
		if err := p.consumeRecords(remote, m.Records, res); err != nil {
			return nil, err
		}
		if err := writeFrame(s, &discMessage{Kind: msgRecords, Records: p.recordsFor(remote)}); err != nil {
			return nil, err
		}
		return res, nil
	}

	m, err := readFrame(r, msgAliceSalt)
	if err != nil {
		return nil, err
	}
	alice = saltHalf(m.Salt)
	if _, err := rand.Read(bob[:]); err != nil {
		return nil, err
	}
	if err := writeFrame(s, &discMessage{Kind: msgBobSaltHashes, Salt: bob[:], Hashes: hashesToWire(psiHashes(ours, alice, bob, psiRoleBob))}); err != nil {
		return nil, err
	}
	m, err = readFrame(r, msgAliceHashes)
	if err != nil {
		return nil, err
	}
	res.shared = psiIntersect(ours, m.hashes(), alice, bob, psiRoleAlice)
	if err := writeFrame(s, &discMessage{Kind: msgRecords, Records: p.recordsFor(remote)}); err != nil {
		return nil, err
	}
	m, err = readFrame(r, msgRecords)
	if err != nil {
		return nil, err
	}
	if err := p.consumeRecords(remote, m.Records, res); err != nil {
		return nil, err
	}
	return res, nil
}

// errBadRecord aborts a session: a peer that sends forged records is not trusted for the
// rest of what it says (p2panda does the same).
var errBadRecord = errors.New("invalid signed peer record")

func (p *Host) consumeRecords(from peer.ID, raw [][]byte, res *discoveryResult) error {
	cab, ok := peerstore.GetCertifiedAddrBook(p.h.Peerstore())
	if !ok {
		return errors.New("peerstore has no certified address book")
	}
	self := p.h.ID()
	for _, data := range raw {
		env, rec, err := record.ConsumeEnvelope(data, peer.PeerRecordEnvelopeDomain)
		if err != nil {
			return fmt.Errorf("%w from %s: %v", errBadRecord, from, err)
		}
		pr, ok := rec.(*peer.PeerRecord)
		if !ok {
			return fmt.Errorf("%w from %s: not a peer record", errBadRecord, from)
		}
		if pr.PeerID == self || len(pr.Addrs) == 0 {
			continue
		}
		// Foreign peers never get here in practice (they cannot talk to us), but a
		// peer may relay records of peers we refused.
		if p.gate.isForeign(pr.PeerID) {
			continue
		}
		accepted, err := cab.ConsumePeerRecord(env, peerstore.AddressTTL)
		if err != nil {
			return fmt.Errorf("%w from %s: %v", errBadRecord, from, err)
		}
		if p.book.add(pr.PeerID, false) || accepted {
			res.newInfo++
		}
		res.learned = append(res.learned, pr.PeerID)
	}
	return nil
}

// recordsFor returns our own signed peer record and a random sample of records of peers
// we know (never more than maxRecords), excluding the remote's own.
func (p *Host) recordsFor(remote peer.ID) [][]byte {
	var out [][]byte
	if own := p.ownSignedRecord(); own != nil {
		out = append(out, own)
	}
	cab, ok := peerstore.GetCertifiedAddrBook(p.h.Peerstore())
	if !ok {
		return out
	}
	known := p.book.known()
	mrand.Shuffle(len(known), func(i, j int) { known[i], known[j] = known[j], known[i] })
	for _, id := range known {
		if len(out) >= maxRecords {
			break
		}
		if id == remote || id == p.h.ID() {
			continue
		}
		env := cab.GetPeerRecord(id)
		if env == nil {
			continue
		}
		data, err := env.Marshal()
		if err != nil || len(data) > maxRecordSize {
			continue
		}
		out = append(out, data)
	}
	return out
}

type ownRecordCache struct {
	addrs []ma.Multiaddr
	data  []byte
}

// ownSignedRecord seals our current addresses (re-signed only when they change).
func (p *Host) ownSignedRecord() []byte {
	addrs := p.h.Addrs()
	if len(addrs) == 0 {
		return nil
	}
	p.ownRecordMu.Lock()
	defer p.ownRecordMu.Unlock()
	if p.ownRecord.data != nil && slices.EqualFunc(addrs, p.ownRecord.addrs, func(a, b ma.Multiaddr) bool { return a.Equal(b) }) {
		return p.ownRecord.data
	}
	rec := peer.PeerRecordFromAddrInfo(peer.AddrInfo{ID: p.h.ID(), Addrs: addrs})
	env, err := record.Seal(rec, p.h.Peerstore().PrivKey(p.h.ID()))
	if err != nil {
		p.log.Warn("seal own peer record", "err", err)
		return nil
	}
	data, err := env.Marshal()
	if err != nil || len(data) > maxRecordSize {
		return nil
	}
	p.ownRecord = ownRecordCache{addrs: addrs, data: data}
	return data
}

// walk is one random walker: it visits peers one after another, running a discovery
// session with each, and slows down while walks bring nothing new.
func (p *Host) walk(i int) {
	defer p.wg.Done()
	seed := mrand.Uint64()
	st := newWalkState(p.h.ID(), mrand.New(mrand.NewPCG(seed, uint64(i))))
	base, maxDelay := p.cfg.WalkInterval, p.cfg.MaxWalkInterval
	delay := jitter(base)
	var learned []peer.ID
	var lastSession time.Time
	for {
		timer := time.NewTimer(delay)
		select {
		case <-p.ctx.Done():
			timer.Stop()
			return
		case <-p.walkResets[i]:
			timer.Stop()
			st.needsReset = true
			// New topics restart the walk at once, but never sooner than base after the
			// previous session: a node subscribing to thousands of topics one by one
			// otherwise ran discovery back to back, each session hashing every topic it
			// follows, and spent most of its CPU on that (cost quadratic in the topics).
			if wait := base - time.Since(lastSession); wait > 0 {
				timer = time.NewTimer(wait)
				select {
				case <-p.ctx.Done():
					timer.Stop()
					return
				case <-timer.C:
				}
			}
		case <-timer.C:
		}
		id, ok := st.next(learned, p.book)
		learned = nil
		if !ok {
			delay = emptyBookDelay
			continue
		}
		lastSession = time.Now()
		res, err := p.discover(p.ctx, id)
		if err != nil {
			if p.ctx.Err() != nil {
				return
			}
			p.book.failed(id)
			delay = min(delay+jitter(2*base), maxDelay)
			continue
		}
		learned = res.learned
		if res.newInfo > 0 { // the walk is still learning: keep the pace
			delay = base
		} else {
			delay = min(delay+base+jitter(4*base), maxDelay)
		}
	}
}
