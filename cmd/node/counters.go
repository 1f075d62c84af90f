package main

import (
	"sort"
	"sync"

	"github.com/pandanet/pandanet/internal/admin"
	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
)

// topicCounters keeps, per topic, the number of stored operations and every log's height,
// so GET /v1/topics (which the operator polls) reads memory instead of scanning the store.
// They are loaded once at start and then follow the pipeline's stored results.
//
// The node stores operations while the start-up scan runs, so results observed before the
// scan is loaded are held back and applied after it, each only if its seq is above its
// log's height in the scan (the scan is one consistent read, and a log grows in seq order,
// so an entry at or below that height is already counted).
type topicCounters struct {
	mu      sync.Mutex
	loaded  bool
	pending []storedEntry // observed before load
	topics  map[operation.Topic]*topicCount
}

type storedEntry struct {
	topic  operation.Topic
	author operation.PublicKey
	log    operation.LogID
	seq    uint64
	pruned int64
}

type topicCount struct {
	ops  int64
	logs map[logKey]uint64 // height
}

type logKey struct {
	author operation.PublicKey
	log    operation.LogID
}

func newTopicCounters() *topicCounters {
	return &topicCounters{topics: make(map[operation.Topic]*topicCount)}
}

func (c *topicCounters) topicLocked(t operation.Topic) *topicCount {
	tc := c.topics[t]
	if tc == nil {
		tc = &topicCount{logs: make(map[logKey]uint64)}
		c.topics[t] = tc
	}
	return tc
}

func (c *topicCounters) addLocked(e storedEntry) {
	tc := c.topicLocked(e.topic)
	k := logKey{e.author, e.log}
	if h, ok := tc.logs[k]; ok && e.seq <= h {
		return // already counted by the start-up scan
	}
	tc.logs[k] = e.seq
	tc.ops += 1 - e.pruned
}

// observe follows a pipeline result (it runs on the pipeline's goroutines and is cheap).
func (c *topicCounters) observe(o node.Observation) {
	if o.Outcome != node.OutcomeStored {
		return
	}
	e := storedEntry{topic: o.Topic, author: o.Author, log: o.Log, seq: o.SeqNum, pruned: o.Pruned}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded {
		c.pending = append(c.pending, e)
		return
	}
	c.addLocked(e)
}

// load installs the start-up scan of the store, then applies what was observed meanwhile.
func (c *topicCounters) load(stats []node.TopicStat) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ts := range stats {
		tc := c.topicLocked(ts.Topic)
		tc.ops = ts.Ops
		for _, l := range ts.Logs {
			tc.logs[logKey{l.Author, l.Log}] = l.Height
		}
	}
	c.loaded = true
	for _, e := range c.pending {
		c.addLocked(e)
	}
	c.pending = nil
}

// status returns the topic's admin status.
func (c *topicCounters) status(t operation.Topic) admin.TopicStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := admin.TopicStatus{Topic: t.String(), Logs: []admin.LogStatus{}}
	tc := c.topics[t]
	if tc == nil {
		return st
	}
	authors := map[operation.PublicKey]struct{}{}
	for k, h := range tc.logs {
		authors[k.author] = struct{}{}
		st.Logs = append(st.Logs, admin.LogStatus{Author: k.author.String(), Height: h})
	}
	sort.Slice(st.Logs, func(i, j int) bool { return st.Logs[i].Author < st.Logs[j].Author })
	st.Operations, st.Authors = tc.ops, int64(len(authors))
	return st
}
