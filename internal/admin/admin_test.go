package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBackend keeps topics and published messages in memory and fans events out to
// subscribers, like the node does.
type fakeBackend struct {
	mu      sync.Mutex
	topics  map[string][][]byte // hex topic → messages
	subs    map[string][]chan node.Event
	stopped chan string // topic of every stopped subscription
	failPub error
	acked   []string // "topic hash" of every Ack
}

func newFake() *fakeBackend {
	return &fakeBackend{topics: map[string][][]byte{}, subs: map[string][]chan node.Event{}, stopped: make(chan string, 16)}
}

func (f *fakeBackend) Status(ctx context.Context) (Status, error) {
	ts, _ := f.Topics(ctx)
	return Status{PeerID: "12D3KooWfake", PublicKey: strings.Repeat("ab", 32), NetworkID: operation.DefaultNetworkID.String(), Topics: ts, Version: "test"}, nil
}

func (f *fakeBackend) Topics(context.Context) ([]TopicStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []TopicStatus
	for t, msgs := range f.topics {
		ts := TopicStatus{Topic: t, Operations: int64(len(msgs))}
		if len(msgs) > 0 {
			ts.Authors = 1
			ts.Logs = []LogStatus{{Author: strings.Repeat("ab", 32), Height: uint64(len(msgs) - 1)}}
		}
		out = append(out, ts)
	}
	return out, nil
}

func (f *fakeBackend) Peers(context.Context) ([]PeerStatus, error) {
	return []PeerStatus{{PeerID: "12D3KooWpeer", Addresses: []string{"/ip4/127.0.0.1/tcp/1"}, Direction: "outbound"}}, nil
}

func (f *fakeBackend) Publish(_ context.Context, topic string, msg []byte) (PublishResult, error) {
	if f.failPub != nil {
		return PublishResult{}, f.failPub
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := uint64(len(f.topics[topic]))
	f.topics[topic] = append(f.topics[topic], msg)
	h := operation.HashOf(msg)
	for _, ch := range f.subs[topic] {
		ch <- processed(topic, seq, msg, node.LocalStore{}, false)
	}
	return PublishResult{Hash: h.String(), Seq: seq}, nil
}

// processed is the event of the seq'th message of topic (hex).
func processed(topic string, seq uint64, msg []byte, src node.Source, replayed bool) node.Event {
	t, err := operation.ParseTopic(topic)
	if err != nil {
		panic(err)
	}
	return node.Processed{Operation: node.ProcessedOperation{Topic: t, Hash: operation.HashOf(msg), SeqNum: seq,
		Message: msg, Source: src, Replayed: replayed}}
}

func (f *fakeBackend) Subscribe(ctx context.Context, topic string, from From) (<-chan node.Event, func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.topics[topic]; !ok {
		return nil, nil, fmt.Errorf("topic %s: %w", topic, ErrNotFound)
	}
	ch := make(chan node.Event, 16)
	if from == FromStart {
		for i, m := range f.topics[topic] {
			ch <- processed(topic, uint64(i), m, node.StoreHistory{}, false)
		}
	}
	f.subs[topic] = append(f.subs[topic], ch)
	var once sync.Once
	stop := func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			l := f.subs[topic]
			for i, c := range l {
				if c == ch {
					f.subs[topic] = append(l[:i], l[i+1:]...)
				}
			}
			close(ch)
			f.stopped <- topic
		})
	}
	return ch, stop, nil
}

func (f *fakeBackend) AddTopic(_ context.Context, topic string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.topics[topic]; !ok {
		f.topics[topic] = nil
	}
	return nil
}

func (f *fakeBackend) Ack(_ context.Context, topic, hash string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acked = append(f.acked, topic+" "+hash)
	return nil
}

func setup(t *testing.T, token string) (*fakeBackend, *Client, *httptest.Server) {
	t.Helper()
	f := newFake()
	srv := httptest.NewServer(NewServer(f, ServerOptions{Token: token, MaxMessageBytes: 1024}))
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL, WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	return f, c, srv
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestRoundTrip(t *testing.T) {
	f, c, _ := setup(t, "tok")
	chat := operation.HashOf([]byte("chat")).String()

	id, err := c.AddTopic(ctx(t), "chat")
	if err != nil || id != chat {
		t.Fatalf("AddTopic = %q, %v", id, err)
	}
	// Hex spelling addresses the same topic.
	if _, err := c.Publish(ctx(t), chat, []byte("one")); err != nil {
		t.Fatal(err)
	}
	res, err := c.Publish(ctx(t), "chat", []byte("two"))
	if err != nil || res.Seq != 1 || res.Hash != operation.HashOf([]byte("two")).String() {
		t.Fatalf("Publish = %+v, %v", res, err)
	}
	ts, err := c.Topics(ctx(t))
	if err != nil || len(ts) != 1 || ts[0].Topic != chat || ts[0].Operations != 2 || ts[0].Logs[0].Height != 1 {
		t.Fatalf("Topics = %+v, %v", ts, err)
	}
	st, err := c.Status(ctx(t))
	if err != nil || st.PeerID != "12D3KooWfake" || len(st.Topics) != 1 || st.Addresses == nil || st.Peers == nil {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	ps, err := c.Peers(ctx(t))
	if err != nil || len(ps) != 1 || ps[0].Direction != "outbound" {
		t.Fatalf("Peers = %+v, %v", ps, err)
	}

	// Subscribe from start: replay, then live.
	stream, err := c.Subscribe(ctx(t), "chat", FromStart)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"one", "two"} {
		ev, err := stream.Next()
		p, ok := ev.Event.(node.Processed)
		if err != nil || !ok || string(p.Operation.Message) != want || p.Operation.SeqNum != uint64(i) ||
			p.Operation.Source != (node.StoreHistory{}) || ev.Topic.String() != chat {
			t.Fatalf("replayed event %d = %+v, %v", i, ev, err)
		}
	}
	if _, err := c.Publish(ctx(t), "chat", []byte("three")); err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Next()
	if p, ok := ev.Event.(node.Processed); err != nil || !ok || string(p.Operation.Message) != "three" || p.Operation.Source != (node.LocalStore{}) {
		t.Fatalf("live event = %+v, %v", ev, err)
	}
	// Client disconnect stops the backend subscription.
	stream.Close()
	select {
	case topic := <-f.stopped:
		if topic != chat {
			t.Errorf("stopped %s", topic)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("subscription not stopped after client disconnect")
	}
}

func TestSubscribeContextCancel(t *testing.T) {
	f, c, _ := setup(t, "")
	if _, err := c.AddTopic(ctx(t), "x"); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx(t))
	stream, err := c.Subscribe(sctx, "x", FromFrontier)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	cancel()
	if _, err := stream.Next(); err == nil {
		t.Fatal("Next after cancel returned no error")
	}
	select {
	case <-f.stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("subscription not stopped after cancel")
	}
}

func TestTopicWithSlash(t *testing.T) {
	_, c, _ := setup(t, "")
	if _, err := c.AddTopic(ctx(t), "team/chat"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx(t), "team/chat", []byte("m")); err != nil {
		t.Fatal(err)
	}
	ts, _ := c.Topics(ctx(t))
	if len(ts) != 1 || ts[0].Topic != operation.HashOf([]byte("team/chat")).String() || ts[0].Operations != 1 {
		t.Fatalf("Topics = %+v", ts)
	}
}

func TestAuth(t *testing.T) {
	_, _, srv := setup(t, "s3cret")
	for _, tc := range []struct {
		name, header string
		want         int
	}{
		{"none", "", 401},
		{"wrong", "Bearer nope", 401},
		{"prefix of token", "Bearer s3cre", 401},
		{"basic", "Basic czNjcmV0", 401},
		{"no scheme", "s3cret", 401},
		{"right", "Bearer s3cret", 200},
		{"case-insensitive scheme", "bearer s3cret", 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+"/v1/topics", nil)
			if tc.header != "" {
				req.Header.Set("Authorization", tc.header)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tc.want, body)
			}
			if tc.want == 401 && (!strings.Contains(string(body), `"error"`) || resp.Header.Get("WWW-Authenticate") == "") {
				t.Errorf("401 body %q, WWW-Authenticate %q", body, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	// The typed client surfaces the status.
	c, _ := NewClient(srv.URL, WithToken("wrong"))
	_, err := c.Status(ctx(t))
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 401 {
		t.Fatalf("client err = %v", err)
	}
}

func TestMalformedInput(t *testing.T) {
	f, _, srv := setup(t, "")
	f.topics[operation.HashOf([]byte("t")).String()] = nil
	long := strings.Repeat("x", 300)
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
		wantErr                  string
	}{
		{"add topic not json", "POST", "/v1/topics", "chat", 400, "topic"},
		{"add topic empty", "POST", "/v1/topics", `{"topic":""}`, 400, "empty"},
		{"add topic unknown field", "POST", "/v1/topics", `{"topic":"a","x":1}`, 400, "unknown field"},
		{"add topic two objects", "POST", "/v1/topics", `{"topic":"a"}{"topic":"b"}`, 400, "exactly one"},
		{"add topic too long", "POST", "/v1/topics", `{"topic":"` + long + `"}`, 400, "at most"},
		{"add topic too large", "POST", "/v1/topics", `{"topic":"` + strings.Repeat("y", 70<<10) + `"}`, 413, "too large"},
		{"publish too large", "POST", "/v1/topics/t/publish", strings.Repeat("z", 1025), 413, "too large"},
		{"publish long topic", "POST", "/v1/topics/" + long + "/publish", "m", 400, "at most"},
		{"events bad from", "GET", "/v1/topics/t/events?from=middle", "", 400, "middle"},
		{"events unknown topic", "GET", "/v1/topics/nope/events", "", 404, "not found"},
		{"unknown path", "GET", "/v1/nothing", "", 404, ""},
		{"wrong method", "DELETE", "/v1/topics", "", 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status = %d, want %d (%s)", resp.StatusCode, tc.want, body)
			}
			if tc.wantErr != "" && (!strings.Contains(string(body), tc.wantErr) || resp.Header.Get("Content-Type") != "application/json") {
				t.Errorf("body = %q (%s), want JSON error containing %q", body, resp.Header.Get("Content-Type"), tc.wantErr)
			}
		})
	}
}

func TestBackendErrors(t *testing.T) {
	f, c, _ := setup(t, "")
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("publish: %w", &operation.ValidationError{Kind: operation.ErrSignature}), 422},
		{fmt.Errorf("x: %w", ErrRejected), 422},
		{fmt.Errorf("x: %w", ErrInvalid), 400},
		{fmt.Errorf("x: %w", ErrNotReady), 503},
		{errors.New("disk on fire"), 500},
	} {
		f.failPub = tc.err
		_, err := c.Publish(ctx(t), "t", []byte("m"))
		var ae *APIError
		if !errors.As(err, &ae) || ae.StatusCode != tc.want || !strings.Contains(ae.Message, tc.err.Error()) {
			t.Errorf("backend error %v → %v, want HTTP %d", tc.err, err, tc.want)
		}
	}
}

func TestNewClientAddresses(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:7070": true, "http://pod.ns.svc:7070": true, "https://x/base/": true,
		"": false, "ftp://x": false, "http://": false,
	} {
		_, err := NewClient(addr)
		if (err == nil) != ok {
			t.Errorf("NewClient(%q) err = %v", addr, err)
		}
	}
}

func TestParseFrom(t *testing.T) {
	for in, want := range map[string]From{"": FromFrontier, "frontier": FromFrontier, "start": FromStart} {
		if got, err := ParseFrom(in); err != nil || got != want {
			t.Errorf("ParseFrom(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseFrom("START"); err == nil {
		t.Error("ParseFrom is case-insensitive")
	}
}

// TestAck: POST /v1/topics/{topic}/ack passes the parsed topic and hash to the backend and
// rejects a body without a valid hash.
func TestAck(t *testing.T) {
	f, c, _ := setup(t, "")
	chat := operation.HashOf([]byte("chat")).String()
	h := operation.HashOf([]byte("op")).String()
	if err := c.Ack(ctx(t), "chat", h); err != nil {
		t.Fatal(err)
	}
	var apiErr *APIError
	if err := c.Ack(ctx(t), "chat", "zz"); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest {
		t.Fatalf("ack of a bad hash: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.acked) != 1 || f.acked[0] != chat+" "+h {
		t.Fatalf("backend acks = %v", f.acked)
	}
}

// eventsBackend streams a fixed list of events to every subscriber, then ends the stream.
type eventsBackend struct {
	*fakeBackend
	events []node.Event
}

func (b eventsBackend) Subscribe(context.Context, string, From) (<-chan node.Event, func(), error) {
	ch := make(chan node.Event, len(b.events))
	for _, ev := range b.events {
		ch <- ev
	}
	close(ch)
	return ch, func() {}, nil
}

// TestEventsStreamWireForm: every kind of node event reaches a client through the events
// stream as the node's JSON form, one object per line, and decodes back into the node's
// types (what the CLI prints and acknowledges).
func TestEventsStreamWireForm(t *testing.T) {
	key, err := operation.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	peer := key.PublicKey()
	hash := operation.HashOf([]byte("op"))
	fail := errors.New("it broke")
	op := node.ProcessedOperation{Hash: hash, Author: peer, SeqNum: 3, Timestamp: 1, Message: []byte("m")}
	var events []node.Event
	for _, src := range []node.Source{node.LocalStore{}, node.StoreHistory{}, node.SyncSession{Peer: peer, SessionID: 2, Phase: node.PhaseLive},
		node.Gossip{Peer: peer}, node.ExternalStream{SessionID: 5}} {
		o := op
		o.Source = src
		events = append(events, node.Processed{Operation: o})
	}
	replayed := op
	replayed.Source, replayed.Replayed = node.LocalStore{}, true
	events = append(events, node.Processed{Operation: replayed},
		node.ProcessingFailed{Hash: hash, Err: fail, Source: node.Gossip{Peer: peer}},
		node.ReplayStarted{Total: 2}, node.ReplayEnded{}, node.ReplayFailed{Err: fail},
		node.ImportStarted{SessionID: 5}, node.ImportEnded{SessionID: 5, Stored: 1, Duplicates: 1},
		node.AckFailed{Hash: hash, Err: fail},
		node.SyncStarted{Peer: peer, SessionID: 2, IncomingOps: 1}, node.SyncEnded{Peer: peer, SessionID: 2, Err: fail})

	srv := httptest.NewServer(NewServer(eventsBackend{newFake(), events}, ServerOptions{}))
	defer srv.Close()
	topic := operation.Topic(operation.HashOf([]byte("chat")))
	// The raw stream is exactly the node's JSON form of each event.
	resp, err := http.Get(srv.URL + "/v1/topics/chat/events")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("events stream: %v, %s", err, resp.Header.Get("Content-Type"))
	}
	var want strings.Builder
	for _, ev := range events {
		line, err := json.Marshal(node.TopicEvent{Topic: topic, Event: ev})
		if err != nil {
			t.Fatal(err)
		}
		want.Write(line)
		want.WriteByte('\n')
	}
	if string(body) != want.String() {
		t.Fatalf("stream\n%s\nwant\n%s", body, want.String())
	}
	// The client decodes each line into the event that was sent.
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := c.Subscribe(ctx(t), "chat", FromFrontier)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	for i, sent := range events {
		got, err := stream.Next()
		if err != nil {
			t.Fatalf("event %d (%T): %v", i, sent, err)
		}
		line, _ := json.Marshal(got)
		wantLine, _ := json.Marshal(node.TopicEvent{Topic: topic, Event: sent})
		if got.Topic != topic || reflect.TypeOf(got.Event) != reflect.TypeOf(sent) || string(line) != string(wantLine) {
			t.Errorf("event %d decoded to %#v, sent %#v", i, got, sent)
		}
	}
	if _, err := stream.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last event: %v, want EOF", err)
	}
}
