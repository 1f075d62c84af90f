package logsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/pandanet/pandanet/pkg/operation"
)

// Conn is the byte stream a session runs on: a libp2p network.Stream, or a net.Conn in tests.
// The session never closes it; the caller closes (or resets) it after Run returns.
type Conn interface {
	io.Reader
	io.Writer
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// Timeouts bound every phase of a session.
type Timeouts struct {
	// Handshake bounds each handshake read and write.
	Handshake time.Duration
	// Read bounds waiting for each frame during catch-up.
	Read time.Duration
	// Write bounds each write; a peer whose sink stalls longer than this is dropped.
	Write time.Duration
	// Idle is how long a session after catch-up may stay silent; each side sends a Ping
	// after Idle/3 without writing.
	Idle time.Duration
	// Close bounds the Close exchange when we end a session.
	Close time.Duration
}

// DefaultTimeouts are generous enough for a slow mobile link and a busy store.
var DefaultTimeouts = Timeouts{
	Handshake: 15 * time.Second,
	Read:      60 * time.Second,
	Write:     60 * time.Second,
	Idle:      30 * time.Second,
	Close:     5 * time.Second,
}

// SessionConfig tunes sessions. Zero fields take the defaults.
type SessionConfig struct {
	Limits   Limits
	Timeouts Timeouts
	// Live keeps the session open after catch-up and forwards operations both ways.
	Live bool
	// QueueSize bounds the operations waiting to be forwarded in live mode; when it is full
	// the session closes with ErrQueueOverflow (and is retried, re-syncing what was missed).
	QueueSize int
	// DedupSize is the number of recent operation ids remembered per session.
	DedupSize int
	// RefusalGrace is how many bytes of a log we refused the peer may still push before the
	// session aborts with ErrIgnoredRefusal (default DefaultRefusalGrace).
	RefusalGrace int
	// RefusalTTL is how long a peer's refusal stops us pushing the refused log, also in
	// later sessions of the same Manager (default DefaultRefusalTTL).
	RefusalTTL time.Duration
}

// DefaultQueueSize is the live queue length per session.
const DefaultQueueSize = 1024

func (c SessionConfig) withDefaults() SessionConfig {
	if c.Limits.MaxFrameSize <= 0 {
		c.Limits.MaxFrameSize = DefaultLimits.MaxFrameSize
	}
	if c.Limits.MaxHaveEntries <= 0 {
		c.Limits.MaxHaveEntries = DefaultLimits.MaxHaveEntries
	}
	d := DefaultTimeouts
	for _, p := range []struct{ v, def *time.Duration }{
		{&c.Timeouts.Handshake, &d.Handshake}, {&c.Timeouts.Read, &d.Read}, {&c.Timeouts.Write, &d.Write},
		{&c.Timeouts.Idle, &d.Idle}, {&c.Timeouts.Close, &d.Close},
	} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
	if c.QueueSize <= 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.DedupSize <= 0 {
		c.DedupSize = DefaultDedupSize
	}
	if c.RefusalGrace <= 0 {
		c.RefusalGrace = DefaultRefusalGrace
	}
	if c.RefusalTTL <= 0 {
		c.RefusalTTL = DefaultRefusalTTL
	}
	return c
}

// SessionParams identify a session and what it reads from and writes to.
type SessionParams struct {
	ID        uint64
	Topic     operation.Topic
	Peer      peer.ID
	Initiator bool
	Store     Store
	Sink      Sink
	Config    SessionConfig
	// OnEvent receives SyncStarted, SyncEnded and Refused. It is called from the session's
	// goroutines and should not block for long.
	OnEvent func(Event)
	// refusals is the Manager's memory of logs peers refused; nil gives the session its own.
	refusals *refusalMemory
}

// Stats counts what a session moved, duplicates included.
type Stats struct {
	SentOps, SentBytes         uint64
	ReceivedOps, ReceivedBytes uint64
}

// Session runs the sync protocol after a successful handshake. Create it with NewSession,
// feed it local operations with Enqueue and run it once with Run.
type Session struct {
	p    SessionParams
	cfg  SessionConfig
	conn Conn
	br   *lazyReader
	bw   *lazyWriter
	// buffers counts the pooled buffers br and bw hold right now.
	buffers *atomic.Int32
	ring    *dedupRing

	queue      *liveQueue
	stopOnce   stdsync.Once
	stopCh     chan struct{}
	stopCause  error
	remoteHave chan Heights
	// remoteClosed is closed by the reader when the peer sent Close.
	remoteClosed chan struct{}
	// catchUpDone is closed when Done was both sent and received.
	catchUpDone chan struct{}

	// wmu serializes writes: the sender owns the stream, but the reader sends Refuse.
	wmu       stdsync.Mutex
	sentClose bool // guarded by wmu; nothing may follow our Close
	// refusedIn is what we refused the peer in this session (reader goroutine only), and
	// ignored the bytes it pushed for those logs afterwards.
	refusedIn map[logKey]string
	ignored   uint64
	refusals  *refusalMemory

	closing atomic.Bool // we are ending the session on purpose (Close exchange)
	aborted atomic.Bool // an error ends the session; I/O is being cut off

	sentOps, sentBytes, recvOps, recvBytes atomic.Uint64

	// deadline bookkeeping, see armRead/armWrite.
	dmu                         stdsync.Mutex
	readDeadline, writeDeadline time.Time
	closeBy                     time.Time

	// catch-up rendezvous between sender and reader for the events.
	emu                       stdsync.Mutex
	outKnown, inKnown         bool
	outOps, outBytes          uint64
	inOps, inBytes            uint64
	sentDone, recvDone, ended bool
	started                   bool
}

// NewSession prepares a session on conn, after the handshake.
func NewSession(conn Conn, p SessionParams) *Session {
	cfg := p.Config.withDefaults()
	mem := p.refusals
	if mem == nil {
		mem = newRefusalMemory(cfg.RefusalTTL)
	}
	held := new(atomic.Int32)
	return &Session{
		refusals:     mem,
		p:            p,
		cfg:          cfg,
		conn:         conn,
		br:           &lazyReader{r: conn, held: held},
		bw:           &lazyWriter{w: conn, held: held},
		buffers:      held,
		ring:         newDedupRing(cfg.DedupSize),
		queue:        newLiveQueue(cfg.QueueSize),
		stopCh:       make(chan struct{}),
		remoteHave:   make(chan Heights, 1),
		remoteClosed: make(chan struct{}),
		catchUpDone:  make(chan struct{}),
	}
}

// ID returns the session id.
func (s *Session) ID() uint64 { return s.p.ID }

// Stats returns what the session moved so far.
func (s *Session) Stats() Stats {
	return Stats{SentOps: s.sentOps.Load(), SentBytes: s.sentBytes.Load(), ReceivedOps: s.recvOps.Load(), ReceivedBytes: s.recvBytes.Load()}
}

// Enqueue queues a locally stored operation for live forwarding without blocking. The slices
// must not be modified afterwards. If the queue is full the session stops with
// ErrQueueOverflow and Enqueue returns false. Sessions not in live mode ignore it; operations
// queued during catch-up are sent right after it.
func (s *Session) Enqueue(header, body []byte) bool {
	if !s.cfg.Live {
		return true
	}
	if s.queue.push(liveOp{hash: operation.HashOf(header), header: header, body: body}) {
		return true
	}
	s.Stop(ErrQueueOverflow)
	return false
}

// Stop ends the session gracefully (Close exchange); Run then returns cause.
func (s *Session) Stop(cause error) {
	s.stopOnce.Do(func() {
		s.stopCause = cause
		close(s.stopCh)
	})
}

var errCloseNow = errors.New("close now")

// Run runs the session until it ends: after catch-up when not live, when either side sends
// Close, ctx ends or Stop is called, or on the first error. It returns nil when the session
// ended normally (catch-up finished and a Close exchange), the cause when we stopped it
// (context.Cause(ctx), or the Stop cause), ErrRemoteClosed when the peer closed before
// catch-up finished, and otherwise the first error. Run can only be called once.
func (s *Session) Run(ctx context.Context) error {
	ictx, icancel := context.WithCancel(context.Background())
	defer icancel()
	errc := make(chan error, 2)
	go func() { errc <- s.sendLoop(ictx) }()
	go func() { errc <- s.recvLoop(ictx) }()

	var first error
	var localCause error
	done, stop := ctx.Done(), s.stopCh
	for pending := 2; pending > 0; {
		select {
		case err := <-errc:
			pending--
			if err != nil && first == nil && !s.closing.Load() {
				first = err
				s.abort()
				icancel()
			}
		case <-done:
			done, stop = nil, nil
			localCause = context.Cause(ctx)
			s.beginClose(icancel)
		case <-stop:
			done, stop = nil, nil
			localCause = s.stopCause
			s.beginClose(icancel)
		}
	}
	// Both loops are done with the stream: give the buffers back.
	s.br.release()
	s.wmu.Lock()
	s.bw.release()
	s.wmu.Unlock()
	var err error
	switch {
	case first != nil:
		err = fmt.Errorf("sync %s with %s: %w", s.p.Topic.String()[:8], s.p.Peer, first)
	case localCause != nil:
		err = localCause
	default:
		// Both loops ended without error after a Close exchange; it was early if our Done
		// was not sent or theirs not received.
		s.emu.Lock()
		if !s.sentDone || !s.recvDone {
			err = ErrRemoteClosed
		}
		s.emu.Unlock()
	}
	s.endCatchUp(err)
	return err
}

// beginClose starts a local graceful end: the sender sends Close, the reader drains until
// the peer's Close, and both get at most Timeouts.Close for it.
func (s *Session) beginClose(icancel context.CancelFunc) {
	s.dmu.Lock()
	s.closing.Store(true)
	s.closeBy = time.Now().Add(s.cfg.Timeouts.Close)
	if s.readDeadline.IsZero() || s.readDeadline.After(s.closeBy) {
		s.readDeadline = s.closeBy
		_ = s.conn.SetReadDeadline(s.closeBy)
	}
	if s.writeDeadline.IsZero() || s.writeDeadline.After(s.closeBy) {
		s.writeDeadline = s.closeBy
		_ = s.conn.SetWriteDeadline(s.closeBy)
	}
	s.dmu.Unlock()
	// Cancels store and sink calls; the loops see closing and finish the exchange.
	icancel()
}

// abort cuts off I/O so that the other loop returns promptly.
func (s *Session) abort() {
	s.dmu.Lock()
	s.aborted.Store(true)
	now := time.Now()
	s.readDeadline, s.writeDeadline = now, now
	_ = s.conn.SetReadDeadline(now)
	_ = s.conn.SetWriteDeadline(now)
	s.dmu.Unlock()
}

// armRead makes sure the next read may wait at least 7/8 of timeout (or until closeBy).
// Deadlines are only moved when that changes something, to keep the per-frame cost low.
func (s *Session) armRead(timeout time.Duration) {
	s.arm(&s.readDeadline, s.conn.SetReadDeadline, timeout)
}

func (s *Session) armWrite() {
	s.arm(&s.writeDeadline, s.conn.SetWriteDeadline, s.cfg.Timeouts.Write)
}

func (s *Session) arm(cur *time.Time, set func(time.Time) error, timeout time.Duration) {
	want := time.Now().Add(timeout)
	s.dmu.Lock()
	defer s.dmu.Unlock()
	if s.aborted.Load() {
		return
	}
	if !s.closeBy.IsZero() && want.After(s.closeBy) {
		want = s.closeBy
	}
	// Refresh when the deadline would fall short of 7/8 of the timeout, or is too far out
	// (a shorter timeout for the next phase).
	if d := want.Sub(*cur); d > timeout/8 || d < -timeout/8 {
		*cur = want
		_ = set(want)
	}
}

// --- sending side ---

func (s *Session) sendLoop(ctx context.Context) error {
	err := s.sendPhases(ctx)
	if s.aborted.Load() {
		return err
	}
	if errors.Is(err, errCloseNow) || s.closing.Load() {
		if werr := s.write(&Message{Kind: KindClose}); werr != nil {
			return fmt.Errorf("send Close: %w", werr)
		}
		if werr := s.flush(); werr != nil {
			return fmt.Errorf("send Close: %w", werr)
		}
		return nil
	}
	return err
}

func (s *Session) write(m *Message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.armWrite()
	_, err := writeFrame(s.bw, m)
	if m.Kind == KindClose {
		s.sentClose = true
	}
	return err
}

func (s *Session) flush() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.armWrite()
	return s.bw.Flush()
}

func (s *Session) buffered() int {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.bw.Buffered()
}

// stopSending reports whether the sender should stop and send Close.
func (s *Session) stopSending() bool {
	if s.closing.Load() {
		return true
	}
	select {
	case <-s.remoteClosed:
		return true
	default:
		return false
	}
}

func (s *Session) sendPhases(ctx context.Context) error {
	local, err := s.p.Store.LogHeights(ctx, s.p.Topic)
	if err != nil {
		return s.localErr("read log heights", err)
	}
	if n := local.Entries(); n > s.cfg.Limits.MaxHaveEntries {
		return fmt.Errorf("%w: we have %d logs, at most %d can be announced", ErrTooManyLogs, n, s.cfg.Limits.MaxHaveEntries)
	}
	if err := s.write(&Message{Kind: KindHave, Have: local}); err != nil {
		return fmt.Errorf("send Have: %w", err)
	}
	if err := s.flush(); err != nil {
		return fmt.Errorf("send Have: %w", err)
	}

	var remote Heights
	select {
	case remote = <-s.remoteHave:
	case <-ctx.Done():
		return errCloseNow
	case <-s.remoteClosed:
		return errCloseNow
	}

	needs := s.withoutRefused(remoteNeeds(local, remote))
	var ops, size uint64
	for _, r := range needs {
		o, b, err := s.p.Store.LogSize(ctx, r.Author, r.Log, r.From, r.To)
		if err != nil {
			return s.localErr("size log", err)
		}
		ops, size = ops+o, size+b
	}
	s.setOutgoing(ops, size)
	if ops == 0 {
		if err := s.write(&Message{Kind: KindDone}); err != nil {
			return fmt.Errorf("send Done: %w", err)
		}
	} else {
		if err := s.write(&Message{Kind: KindPreSync, Ops: ops, Bytes: size}); err != nil {
			return fmt.Errorf("send PreSync: %w", err)
		}
		if err := s.pushLogs(ctx, needs, ops, size); err != nil {
			return err
		}
		if err := s.write(&Message{Kind: KindDone}); err != nil {
			return fmt.Errorf("send Done: %w", err)
		}
	}
	if err := s.flush(); err != nil {
		return fmt.Errorf("send Done: %w", err)
	}
	s.markSentDone()
	return s.afterDone(ctx)
}

var (
	errStopPush = errors.New("stop pushing")
	errSkipLog  = errors.New("peer refused the log")
)

// pushLogs streams the needed ranges from the store, never sending more than announced
// (the peer would abort us for it).
func (s *Session) pushLogs(ctx context.Context, needs []logRange, ops, size uint64) error {
	var sentOps, sentBytes uint64
	for _, r := range needs {
		watch := s.refusals.any(s.p.Peer, s.p.Topic)
		err := s.p.Store.LogRange(ctx, r.Author, r.Log, r.From, r.To, func(header, body []byte) error {
			if s.stopSending() {
				return errStopPush
			}
			// Checked per operation (cheap once the peer refused anything), so a Refuse
			// arriving in the middle of a long log stops it at once.
			if (watch || s.refusals.any(s.p.Peer, s.p.Topic)) && s.peerRefused(r.Author, r.Log) {
				watch = true
				return errSkipLog
			}
			n := uint64(len(header) + len(body))
			if sentOps+1 > ops || sentBytes+n > size {
				return fmt.Errorf("store returned more than LogSize counted for %s/%s", r.Author.Short(), r.Log.Short())
			}
			if len(body) == 0 {
				body = nil
			}
			s.ring.add(operation.HashOf(header))
			if err := s.write(&Message{Kind: KindOperation, Header: header, Body: body}); err != nil {
				return fmt.Errorf("send Operation: %w", err)
			}
			sentOps, sentBytes = sentOps+1, sentBytes+n
			s.sentOps.Add(1)
			s.sentBytes.Add(n)
			return nil
		})
		if errors.Is(err, errSkipLog) {
			continue
		}
		if errors.Is(err, errStopPush) || (err != nil && s.stopSending()) {
			return errCloseNow
		}
		if err != nil {
			return s.localErr(fmt.Sprintf("push log %s/%s", r.Author.Short(), r.Log.Short()), err)
		}
	}
	return nil
}

// afterDone forwards live operations and keeps the session alive with Pings until it should
// close: at once after catch-up when not live, otherwise on Close or Stop.
func (s *Session) afterDone(ctx context.Context) error {
	var catchUp <-chan struct{}
	var queue <-chan struct{}
	var batch []liveOp
	if s.cfg.Live {
		queue = s.queue.ready
	} else {
		catchUp = s.catchUpDone
	}
	interval := s.cfg.Timeouts.Idle / 3
	ping := time.NewTicker(interval)
	defer ping.Stop()
	lastWrite := time.Now()
	for {
		if s.stopSending() {
			return errCloseNow
		}
		select {
		case <-ctx.Done():
			return errCloseNow
		case <-s.remoteClosed:
			return errCloseNow
		case <-catchUp:
			return errCloseNow
		case <-queue:
			batch = s.queue.take(batch)
			for _, op := range batch {
				if s.stopSending() {
					return errCloseNow
				}
				// Skip what the peer sent us or we sent already, and logs the peer refused.
				if s.liveRefused(op.header) || !s.ring.add(op.hash) {
					continue
				}
				if err := s.write(&Message{Kind: KindLive, Header: op.header, Body: op.body}); err != nil {
					return fmt.Errorf("send Live: %w", err)
				}
				s.sentOps.Add(1)
				s.sentBytes.Add(uint64(len(op.header) + len(op.body)))
				lastWrite = time.Now()
			}
			// Batch writes while more are queued; never leave anything buffered when idle.
			if s.queue.len() == 0 && s.buffered() > 0 {
				if err := s.flush(); err != nil {
					return fmt.Errorf("send Live: %w", err)
				}
			}
		case now := <-ping.C:
			if now.Sub(lastWrite) < interval {
				continue
			}
			if err := s.write(&Message{Kind: KindPing}); err != nil {
				return fmt.Errorf("send Ping: %w", err)
			}
			if err := s.flush(); err != nil {
				return fmt.Errorf("send Ping: %w", err)
			}
			lastWrite = now
		}
	}
}

// localErr wraps a store failure; when we are closing, it becomes the Close signal instead.
func (s *Session) localErr(what string, err error) error {
	if s.stopSending() {
		return errCloseNow
	}
	return fmt.Errorf("%s: %w", what, err)
}

// --- receiving side ---

// read returns the next message other than Refuse; Refuse messages, which may arrive in any
// phase after Have, are handled on the way.
func (s *Session) read(maxSize int, timeout time.Duration, buf *[]byte) (*Message, error) {
	for {
		m, err := s.readFrame(maxSize, timeout, buf)
		if err != nil || m.Kind != KindRefuse {
			return m, err
		}
		s.onRefused(m)
	}
}

func (s *Session) readFrame(maxSize int, timeout time.Duration, buf *[]byte) (*Message, error) {
	s.armRead(timeout)
	m, err := readFrame(s.br, maxSize, buf, s.cfg.Limits)
	if err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return nil, ErrUnexpectedClosure
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, fmt.Errorf("no message within %s: %w", timeout, err)
		}
		return nil, err
	}
	return m, nil
}

// errGotClose unwinds the reader when the peer sent Close.
var errGotClose = errors.New("peer sent Close")

func (s *Session) recvLoop(ctx context.Context) error {
	err := s.recvPhases(ctx)
	if errors.Is(err, errGotClose) {
		close(s.remoteClosed)
		return nil
	}
	return err
}

func (s *Session) recvPhases(ctx context.Context) error {
	var buf []byte
	limits, t := s.cfg.Limits, s.cfg.Timeouts

	// Nothing can be refused before the peer saw our Have: a Refuse here is unexpected.
	m, err := s.readFrame(limits.maxHaveFrame(), t.Read, &buf)
	if err != nil {
		return fmt.Errorf("read Have: %w", err)
	}
	switch m.Kind {
	case KindHave:
		s.remoteHave <- m.Have
	case KindClose:
		return s.onClose()
	default:
		return fmt.Errorf("%w: %s instead of Have", ErrUnexpectedMessage, m.Kind)
	}

	m, err = s.read(limits.MaxFrameSize, t.Read, &buf)
	if err != nil {
		return fmt.Errorf("read PreSync: %w", err)
	}
	switch m.Kind {
	case KindDone:
		s.setIncoming(0, 0)
	case KindPreSync:
		s.setIncoming(m.Ops, m.Bytes)
		if err := s.receiveCatchUp(ctx, m.Ops, m.Bytes, &buf); err != nil {
			return err
		}
	case KindClose:
		return s.onClose()
	default:
		return fmt.Errorf("%w: %s instead of PreSync or Done", ErrUnexpectedMessage, m.Kind)
	}
	s.markRecvDone()

	for {
		m, err := s.read(limits.MaxFrameSize, t.Idle, &buf)
		if err != nil {
			return fmt.Errorf("live: %w", err)
		}
		switch m.Kind {
		case KindLive:
			s.count(m)
			if err := s.deliver(ctx, m, PhaseLive); err != nil {
				return err
			}
		case KindPing:
		case KindClose:
			return s.onClose()
		default:
			return fmt.Errorf("%w: %s after Done", ErrUnexpectedMessage, m.Kind)
		}
	}
}

func (s *Session) receiveCatchUp(ctx context.Context, ops, size uint64, buf *[]byte) error {
	var gotOps, gotBytes uint64
	for {
		m, err := s.read(s.cfg.Limits.MaxFrameSize, s.cfg.Timeouts.Read, buf)
		if err != nil {
			return fmt.Errorf("catch-up: %w", err)
		}
		switch m.Kind {
		case KindOperation:
			n := uint64(len(m.Header) + len(m.Body))
			if gotOps+1 > ops || gotBytes+n > size {
				return fmt.Errorf("%w: announced %d ops / %d bytes, got op %d bringing %d bytes",
					ErrExceedsAnnounced, ops, size, gotOps+1, gotBytes+n)
			}
			gotOps, gotBytes = gotOps+1, gotBytes+n
			s.count(m)
			if err := s.deliver(ctx, m, PhaseSync); err != nil {
				return err
			}
		case KindDone:
			return s.settle(ctx)
		case KindClose:
			return s.onClose()
		default:
			return fmt.Errorf("%w: %s during catch-up", ErrUnexpectedMessage, m.Kind)
		}
	}
}

func (s *Session) count(m *Message) {
	s.recvOps.Add(1)
	s.recvBytes.Add(uint64(len(m.Header) + len(m.Body)))
}

// deliver drops duplicates and hands the operation to the sink. While we are closing,
// operations are drained without delivery.
func (s *Session) deliver(ctx context.Context, m *Message, phase Phase) error {
	// Refused logs are checked before the dedup ring, so re-sending the same refused
	// operation counts against the peer too.
	if len(s.refusedIn) > 0 {
		if dropped, err := s.dropRefused(m); dropped || err != nil {
			return err
		}
	}
	hash := operation.HashOf(m.Header)
	if !s.ring.add(hash) || s.closing.Load() {
		return nil
	}
	err := s.p.Sink.Receive(ctx, s.p.Topic, m.Header, m.Body, Source{Peer: s.p.Peer, SessionID: s.p.ID, Phase: phase})
	var refused *RefusedError
	switch {
	case err == nil, s.closing.Load():
		return nil
	case errors.As(err, &refused):
		return s.refuse(refused)
	case errors.Is(err, ErrInvalidOperation):
		return fmt.Errorf("operation %s: %w", hash.Short(), err)
	default:
		return fmt.Errorf("sink: operation %s: %w", hash.Short(), err)
	}
}

// Settler is implemented by sinks that check operations asynchronously (Receive returns
// before the operation is verified). Settle waits until every operation the session handed
// over was checked and returns an error wrapping ErrInvalidOperation if one was invalid.
// Sessions call it when the peer's catch-up ends, so an invalid operation sent last still
// aborts the session and marks the peer as misbehaving before SyncEnded reports success.
type Settler interface {
	Settle(ctx context.Context, src Source) error
}

func (s *Session) settle(ctx context.Context) error {
	st, ok := s.p.Sink.(Settler)
	if !ok || s.closing.Load() {
		return nil
	}
	var err error
	for {
		err = st.Settle(ctx, Source{Peer: s.p.Peer, SessionID: s.p.ID, Phase: PhaseSync})
		// A refusal found while settling is answered like one from Receive; then the
		// remaining operations are settled.
		var refused *RefusedError
		if !errors.As(err, &refused) || s.closing.Load() {
			break
		}
		if rerr := s.refuse(refused); rerr != nil {
			return rerr
		}
	}
	switch {
	case err == nil, s.closing.Load():
		return nil
	case errors.Is(err, ErrInvalidOperation):
		return fmt.Errorf("catch-up: %w", err)
	default:
		return fmt.Errorf("sink: settle catch-up: %w", err)
	}
}

// onClose unwinds the reader; recvLoop then tells the sender, which answers with Close.
func (s *Session) onClose() error { return errGotClose }

// --- events ---

func (s *Session) emit(e Event) {
	if s.p.OnEvent != nil {
		s.p.OnEvent(e)
	}
}

func (s *Session) setOutgoing(ops, size uint64) {
	s.emu.Lock()
	s.outKnown, s.outOps, s.outBytes = true, ops, size
	s.maybeStartedLocked()
}

func (s *Session) setIncoming(ops, size uint64) {
	s.emu.Lock()
	s.inKnown, s.inOps, s.inBytes = true, ops, size
	s.maybeStartedLocked()
}

// maybeStartedLocked emits SyncStarted once both announcements are known; it unlocks emu.
func (s *Session) maybeStartedLocked() {
	if !s.outKnown || !s.inKnown || s.started {
		s.emu.Unlock()
		return
	}
	s.started = true
	ev := SyncStarted{Topic: s.p.Topic, Peer: s.p.Peer, SessionID: s.p.ID, Initiator: s.p.Initiator,
		IncomingOps: s.inOps, IncomingBytes: s.inBytes, OutgoingOps: s.outOps, OutgoingBytes: s.outBytes}
	s.emu.Unlock()
	s.emit(ev)
}

func (s *Session) markSentDone() {
	s.emu.Lock()
	s.sentDone = true
	s.maybeEndedLocked()
}

func (s *Session) markRecvDone() {
	s.emu.Lock()
	s.recvDone = true
	s.maybeEndedLocked()
}

func (s *Session) maybeEndedLocked() {
	if !s.sentDone || !s.recvDone || s.ended {
		s.emu.Unlock()
		return
	}
	s.ended = true
	close(s.catchUpDone)
	st := s.Stats()
	s.emu.Unlock()
	s.emit(SyncEnded{Topic: s.p.Topic, Peer: s.p.Peer, SessionID: s.p.ID, Initiator: s.p.Initiator,
		SentOps: st.SentOps, SentBytes: st.SentBytes, ReceivedOps: st.ReceivedOps, ReceivedBytes: st.ReceivedBytes})
}

// endCatchUp emits SyncEnded with err if the session ended before catch-up completed.
func (s *Session) endCatchUp(err error) {
	s.emu.Lock()
	if s.ended {
		s.emu.Unlock()
		return
	}
	s.ended = true
	st := s.Stats()
	s.emu.Unlock()
	if err == nil {
		err = ErrRemoteClosed
	}
	s.emit(SyncEnded{Topic: s.p.Topic, Peer: s.p.Peer, SessionID: s.p.ID, Initiator: s.p.Initiator,
		SentOps: st.SentOps, SentBytes: st.SentBytes, ReceivedOps: st.ReceivedOps, ReceivedBytes: st.ReceivedBytes, Err: err})
}
