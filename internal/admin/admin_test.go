package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/pandanet/pandanet/pkg/operation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeBackend keeps topics and published messages in memory and fans events out to
// subscribers, like the node does.
type fakeBackend struct {
	mu      sync.Mutex
	topics  map[string][][]byte // hex topic → messages
	subs    map[string][]chan Event
	stopped chan string // topic of every stopped subscription
	failPub error
	acked   []string // "topic hash" of every Ack
}

func newFake() *fakeBackend {
	return &fakeBackend{topics: map[string][][]byte{}, subs: map[string][]chan Event{}, stopped: make(chan string, 16)}
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
	h := operation.HashOf(msg).String()
	for _, ch := range f.subs[topic] {
		ch <- Event{Type: EventProcessed, Topic: topic, Hash: h, Seq: seq, Source: "local", Message: msg}
	}
	return PublishResult{Hash: h, Seq: seq}, nil
}

func (f *fakeBackend) Subscribe(ctx context.Context, topic string, from From) (<-chan Event, func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.topics[topic]; !ok {
		return nil, nil, fmt.Errorf("topic %s: %w", topic, ErrNotFound)
	}
	ch := make(chan Event, 16)
	if from == FromStart {
		for i, m := range f.topics[topic] {
			ch <- Event{Type: EventProcessed, Topic: topic, Seq: uint64(i), Message: m, Source: "replay"}
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
		if err != nil || string(ev.Message) != want || ev.Seq != uint64(i) || ev.Type != EventProcessed {
			t.Fatalf("replayed event %d = %+v, %v", i, ev, err)
		}
	}
	if _, err := c.Publish(ctx(t), "chat", []byte("three")); err != nil {
		t.Fatal(err)
	}
	ev, err := stream.Next()
	if err != nil || string(ev.Message) != "three" || ev.Source != "local" {
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
