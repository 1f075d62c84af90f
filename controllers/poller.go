package controllers

import (
	"context"
	"sync"
	"time"
)

// sharedPoller lets every TopicReplica of a network share one GET /v1/topics per node
// and poll period: callers asking for the same node while a request is in flight wait
// for it, and answers younger than maxAge are served from memory. Without it, N
// TopicReplicas cost N requests per node per period, each a full listing on the node.
type sharedPoller struct {
	nodes  NodeStatusClient
	maxAge time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[string]*pollEntry
}

type pollEntry struct {
	done   chan struct{} // closed when the request finished
	at     time.Time
	topics []NodeTopicStatus
	err    error
}

func newSharedPoller(nodes NodeStatusClient, maxAge time.Duration) *sharedPoller {
	return &sharedPoller{nodes: nodes, maxAge: maxAge, now: time.Now, entries: map[string]*pollEntry{}}
}

// Topics returns the node's topic listing, at most maxAge old. The request runs with
// its own deadline-bound context detached from the first caller's cancellation, so a
// caller giving up does not fail the others waiting on the same request.
func (p *sharedPoller) Topics(ctx context.Context, ep NodeEndpoint) ([]NodeTopicStatus, error) {
	key := ep.Namespace + "/" + ep.Pod + "/" + ep.Token
	p.mu.Lock()
	e := p.entries[key]
	fresh := e != nil && (isOpen(e.done) || p.now().Sub(e.at) < p.maxAge)
	if !fresh {
		e = &pollEntry{done: make(chan struct{})}
		p.entries[key] = e
		go p.fetch(ep, e)
	}
	p.mu.Unlock()
	select {
	case <-e.done:
		return e.topics, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pollTimeout bounds one node request.
const pollTimeout = 5 * time.Second

func (p *sharedPoller) fetch(ep NodeEndpoint, e *pollEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), pollTimeout)
	defer cancel()
	topics, err := p.nodes.Topics(ctx, ep)
	p.mu.Lock()
	e.topics, e.err, e.at = topics, err, p.now()
	if err != nil {
		// A failure is not cached beyond this request: the next caller retries.
		if p.entries[ep.Namespace+"/"+ep.Pod+"/"+ep.Token] == e {
			delete(p.entries, ep.Namespace+"/"+ep.Pod+"/"+ep.Token)
		}
	}
	p.mu.Unlock()
	close(e.done)
}

func isOpen(ch chan struct{}) bool {
	select {
	case <-ch:
		return false
	default:
		return true
	}
}

// forget drops cached answers of pods no longer wanted (called rarely; bounded by the
// number of nodes in the cluster anyway).
func (p *sharedPoller) forgetOlderThan(age time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, e := range p.entries {
		if !isOpen(e.done) && p.now().Sub(e.at) > age {
			delete(p.entries, k)
		}
	}
}
