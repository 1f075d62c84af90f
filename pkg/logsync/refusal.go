package logsync

import (
	"errors"
	"fmt"
	stdsync "sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Refusals: a receiver whose Sink refuses an operation (the topic's write policy does not
// take it: not a writer, over quota, retention) answers with a Refuse message naming the
// log and the reason, and drops the rest of that log for the session. The pusher stops
// pushing that log, in this session and, for RefusalTTL, in later sessions with the same
// peer, so a refused log is not retried in a storm while the session goes on for the
// topic's other logs. A peer that keeps pushing a refused log beyond RefusalGrace bytes
// (more than an honest peer has in flight when the Refuse reaches it) is misbehaving: the
// session aborts with ErrIgnoredRefusal and the Manager rate-limits the peer.

var (
	// ErrRefused is wrapped by RefusedError.
	ErrRefused = errors.New("operation refused")
	// ErrIgnoredRefusal is a peer that kept pushing a log we refused. It wraps ErrProtocol.
	ErrIgnoredRefusal = fmt.Errorf("%w: kept pushing a refused log", ErrProtocol)
)

// RefusedError is what a Sink returns for an operation it refuses by policy (it is valid,
// but this node does not take it). The session sends the peer a Refuse for the log and
// goes on; the operation is not stored.
type RefusedError struct {
	Author operation.PublicKey
	Log    operation.LogID
	// Reason is a short machine-readable code (at most MaxReasonLength bytes), e.g.
	// "not_writer" or "over_quota".
	Reason string
	Err    error
}

func (e *RefusedError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("refused log %s/%s (%s): %v", e.Author.Short(), e.Log.Short(), e.Reason, e.Err)
	}
	return fmt.Sprintf("refused log %s/%s (%s)", e.Author.Short(), e.Log.Short(), e.Reason)
}

func (e *RefusedError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrRefused, e.Err}
	}
	return []error{ErrRefused}
}

// Refused is emitted when a Refuse is sent (Outgoing: we refused the peer's log) or
// received (the peer refused ours).
type Refused struct {
	Topic     operation.Topic
	Peer      peer.ID
	SessionID uint64
	Author    operation.PublicKey
	Log       operation.LogID
	Reason    string
	// Outgoing is true when we refused the peer's operations.
	Outgoing bool
}

func (Refused) isEvent() {}

// Defaults for refusal handling.
const (
	// DefaultRefusalTTL is how long a peer's refusal of one of our logs stops us pushing it.
	DefaultRefusalTTL = 10 * time.Minute
	// DefaultRefusalGrace is how many bytes of a refused log a peer may still send after we
	// refused it: what can be in flight in buffers and stream windows.
	DefaultRefusalGrace = 16 << 20
	// DefaultPenalty is how long a peer that ignored a refusal is refused sessions; it
	// doubles with every repeat, up to MaxPenalty.
	DefaultPenalty = time.Minute
	// maxRemembered bounds the refusal memory; the oldest entries go first.
	maxRemembered = 65536
)

type refusalKey struct {
	peer   peer.ID
	topic  operation.Topic
	author operation.PublicKey
	log    operation.LogID
}

type peerTopic struct {
	peer  peer.ID
	topic operation.Topic
}

// refusalMemory remembers which of our logs peers refused, until a TTL passes.
type refusalMemory struct {
	ttl   time.Duration
	mu    stdsync.Mutex
	until map[refusalKey]time.Time
	per   map[peerTopic]int // entries per (peer, topic), so sessions skip lookups when 0
	order []refusalKey      // insertion order, for bounding the size
}

func newRefusalMemory(ttl time.Duration) *refusalMemory {
	return &refusalMemory{ttl: ttl, until: make(map[refusalKey]time.Time), per: make(map[peerTopic]int)}
}

func (m *refusalMemory) add(k refusalKey, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.until[k]; !ok {
		m.per[peerTopic{k.peer, k.topic}]++
		m.order = append(m.order, k)
	}
	m.until[k] = now.Add(m.ttl)
	for len(m.until) > maxRemembered && len(m.order) > 0 {
		m.removeLocked(m.order[0])
		m.order = m.order[1:]
	}
	if len(m.order) > 2*len(m.until)+64 {
		kept := m.order[:0]
		for _, o := range m.order {
			if _, ok := m.until[o]; ok {
				kept = append(kept, o)
			}
		}
		m.order = kept
	}
}

func (m *refusalMemory) removeLocked(k refusalKey) {
	if _, ok := m.until[k]; !ok {
		return
	}
	delete(m.until, k)
	pt := peerTopic{k.peer, k.topic}
	if m.per[pt]--; m.per[pt] <= 0 {
		delete(m.per, pt)
	}
}

// any reports whether the peer refused any of our logs of topic (possibly expired).
func (m *refusalMemory) any(p peer.ID, topic operation.Topic) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.per[peerTopic{p, topic}] > 0
}

// refused reports whether the peer refused the log and the refusal has not expired.
func (m *refusalMemory) refused(k refusalKey, now time.Time) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	until, ok := m.until[k]
	if !ok {
		return false
	}
	if now.After(until) {
		m.removeLocked(k)
		return false
	}
	return true
}

// penalties rate-limits peers that ignored refusals.
type penalties struct {
	base time.Duration
	mu   stdsync.Mutex
	box  map[peer.ID]penalty
}

type penalty struct {
	until  time.Time
	length time.Duration
}

// maxPenalty caps the doubling.
const maxPenalty = time.Hour

func newPenalties(base time.Duration) *penalties {
	return &penalties{base: base, box: make(map[peer.ID]penalty)}
}

// punish bans p for the base duration, doubled for every repeat while the last penalty
// is recent (within twice its length).
func (ps *penalties) punish(p peer.ID, now time.Time) time.Duration {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	d := ps.base
	if old, ok := ps.box[p]; ok && now.Before(old.until.Add(old.length)) {
		d = min(old.length*2, maxPenalty)
	}
	ps.box[p] = penalty{until: now.Add(d), length: d}
	for q, pen := range ps.box {
		if now.After(pen.until.Add(pen.length)) {
			delete(ps.box, q)
		}
	}
	return d
}

// banned reports whether p is serving a penalty.
func (ps *penalties) banned(p peer.ID, now time.Time) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	pen, ok := ps.box[p]
	return ok && now.Before(pen.until)
}

type logKey struct {
	author operation.PublicKey
	log    operation.LogID
}

// withoutRefused drops the logs the peer refused recently from what we push.
func (s *Session) withoutRefused(needs []logRange) []logRange {
	if !s.refusals.any(s.p.Peer, s.p.Topic) {
		return needs
	}
	kept := needs[:0]
	for _, r := range needs {
		if !s.peerRefused(r.Author, r.Log) {
			kept = append(kept, r)
		}
	}
	return kept
}

func (s *Session) peerRefused(author operation.PublicKey, log operation.LogID) bool {
	return s.refusals.refused(refusalKey{s.p.Peer, s.p.Topic, author, log}, time.Now())
}

// liveRefused reports whether a live operation belongs to a log the peer refused. The
// header is only decoded once the peer refused something.
func (s *Session) liveRefused(header []byte) bool {
	if !s.refusals.any(s.p.Peer, s.p.Topic) {
		return false
	}
	h, err := operation.DecodeHeader(header)
	if err != nil || h.Extensions == nil {
		return false
	}
	return s.peerRefused(h.PublicKey, h.Extensions.LogID)
}

// onRefused handles the peer's Refuse: remember it, so the sender skips the log from now on.
func (s *Session) onRefused(m *Message) {
	s.refusals.add(refusalKey{s.p.Peer, s.p.Topic, m.Author, m.Log}, time.Now())
	s.emit(Refused{Topic: s.p.Topic, Peer: s.p.Peer, SessionID: s.p.ID, Author: m.Author, Log: m.Log, Reason: m.Reason})
}

// refuse answers the sink's refusal: the first time for a log, it tells the peer (reader
// goroutine only).
func (s *Session) refuse(r *RefusedError) error {
	k := logKey{r.Author, r.Log}
	if _, ok := s.refusedIn[k]; ok {
		return nil
	}
	if s.refusedIn == nil {
		s.refusedIn = make(map[logKey]string)
	}
	reason := r.Reason
	if len(reason) > MaxReasonLength {
		reason = reason[:MaxReasonLength]
	}
	s.refusedIn[k] = reason
	s.emit(Refused{Topic: s.p.Topic, Peer: s.p.Peer, SessionID: s.p.ID, Author: r.Author, Log: r.Log, Reason: reason, Outgoing: true})
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.sentClose || s.closing.Load() {
		return nil
	}
	s.armWrite()
	if _, err := writeFrame(s.bw, &Message{Kind: KindRefuse, Author: r.Author, Log: r.Log, Reason: reason}); err != nil {
		return fmt.Errorf("send Refuse: %w", err)
	}
	if err := s.bw.Flush(); err != nil {
		return fmt.Errorf("send Refuse: %w", err)
	}
	return nil
}

// dropRefused drops an operation of a log we refused in this session without handing it
// to the sink, and aborts the session once the peer pushed more than RefusalGrace bytes of
// refused logs: an honest peer stops when our Refuse reaches it.
func (s *Session) dropRefused(m *Message) (bool, error) {
	h, err := operation.DecodeHeader(m.Header)
	if err != nil || h.Extensions == nil {
		return false, nil // the sink rejects it as invalid
	}
	if _, ok := s.refusedIn[logKey{h.PublicKey, h.Extensions.LogID}]; !ok {
		return false, nil
	}
	s.ignored += uint64(len(m.Header) + len(m.Body))
	if s.ignored > uint64(s.cfg.RefusalGrace) {
		return true, fmt.Errorf("%w: %d bytes after our Refuse", ErrIgnoredRefusal, s.ignored)
	}
	return true, nil
}
