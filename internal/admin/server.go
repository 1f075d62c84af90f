package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pandanet/pandanet/pkg/node"
	"github.com/pandanet/pandanet/pkg/operation"
)

// Limits on request bodies.
const (
	// DefaultMaxMessageBytes matches the largest operation body the node accepts.
	DefaultMaxMessageBytes = operation.DefaultMaxPayloadSize
	// maxJSONBody bounds JSON request bodies ({"topic": ...} is tiny).
	maxJSONBody = 64 << 10
)

// Connection timeouts. A request body must arrive within BodyTimeout (a 1 MiB publish
// needs 35 kB/s), and a client of an events stream must take each event within
// EventWriteTimeout; slower clients are disconnected, so they cannot hold a connection,
// memory or a shutdown.
var (
	BodyTimeout       = 30 * time.Second
	EventWriteTimeout = 30 * time.Second
)

// ServerOptions configure NewServer.
type ServerOptions struct {
	// Token, if non-empty, is required as "Authorization: Bearer <Token>" on every request.
	Token string
	// MaxMessageBytes bounds a publish body; DefaultMaxMessageBytes if zero.
	MaxMessageBytes int64
	// Logger receives request failures; slog.Default() if nil.
	Logger *slog.Logger
}

// Server is the admin API http.Handler.
type Server struct {
	backend  Backend
	tokenSum [sha256.Size]byte
	hasToken bool
	maxMsg   int64
	log      *slog.Logger
	mux      *http.ServeMux

	mu      sync.Mutex
	closing bool
	streams map[*http.ResponseController]context.CancelFunc
}

// NewServer returns the admin API handler over backend.
func NewServer(backend Backend, opts ServerOptions) *Server {
	s := &Server{backend: backend, maxMsg: opts.MaxMessageBytes, log: opts.Logger,
		streams: make(map[*http.ResponseController]context.CancelFunc)}
	if s.maxMsg <= 0 {
		s.maxMsg = DefaultMaxMessageBytes
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if opts.Token != "" {
		s.hasToken = true
		s.tokenSum = sha256.Sum256([]byte(opts.Token))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/topics", s.topics)
	mux.HandleFunc("GET /v1/peers", s.peers)
	mux.HandleFunc("POST /v1/topics", s.addTopic)
	mux.HandleFunc("POST /v1/topics/{topic}/publish", s.publish)
	mux.HandleFunc("GET /v1/topics/{topic}/events", s.events)
	mux.HandleFunc("POST /v1/topics/{topic}/ack", s.ack)
	s.mux = mux
	return s
}

// CloseStreams ends every events stream, also one whose client stopped reading (its
// pending write is aborted), and refuses new ones. Call it before http.Server.Shutdown,
// which waits for running handlers.
func (s *Server) CloseStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for rc, cancel := range s.streams {
		cancel()
		_ = rc.SetWriteDeadline(time.Now())
	}
}

// addStream registers a running events stream; false once CloseStreams was called.
func (s *Server) addStream(rc *http.ResponseController, cancel context.CancelFunc) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.streams[rc] = cancel
	return true
}

func (s *Server) removeStream(rc *http.ResponseController) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.streams, rc)
}

// ServeHTTP authenticates and dispatches.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.hasToken && !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="panda-node"`)
		writeError(w, http.StatusUnauthorized, errors.New("missing or wrong bearer token"))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// Not supported by every ResponseWriter (httptest's recorder); the server's other
		// timeouts still apply then.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(BodyTimeout))
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) < len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return false
	}
	// Compare fixed-size digests: subtle.ConstantTimeCompare returns early on a length
	// mismatch, which would leak the token length.
	got := sha256.Sum256([]byte(strings.TrimSpace(h[len(prefix):])))
	return subtle.ConstantTimeCompare(got[:], s.tokenSum[:]) == 1
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.backend.Status(r.Context())
	if err != nil {
		s.fail(w, r, "status", err)
		return
	}
	if st.Addresses == nil {
		st.Addresses = []string{}
	}
	if st.Topics == nil {
		st.Topics = []TopicStatus{}
	}
	if st.Peers == nil {
		st.Peers = []PeerStatus{}
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) topics(w http.ResponseWriter, r *http.Request) {
	ts, err := s.backend.Topics(r.Context())
	if err != nil {
		s.fail(w, r, "topics", err)
		return
	}
	if ts == nil {
		ts = []TopicStatus{}
	}
	writeJSON(w, http.StatusOK, ts)
}

func (s *Server) peers(w http.ResponseWriter, r *http.Request) {
	ps, err := s.backend.Peers(r.Context())
	if err != nil {
		s.fail(w, r, "peers", err)
		return
	}
	if ps == nil {
		ps = []PeerStatus{}
	}
	writeJSON(w, http.StatusOK, ps)
}

// AddTopicRequest is the body of POST /v1/topics.
type AddTopicRequest struct {
	Topic string `json:"topic"`
}

// DecodeAddTopic reads and validates a POST /v1/topics body, returning the topic id.
func DecodeAddTopic(r io.Reader) (operation.Topic, error) {
	dec := json.NewDecoder(io.LimitReader(r, maxJSONBody+1))
	dec.DisallowUnknownFields()
	var req AddTopicRequest
	if err := dec.Decode(&req); err != nil {
		return operation.Topic{}, fmt.Errorf("body must be {\"topic\": \"...\"}: %w", err)
	}
	if dec.More() {
		return operation.Topic{}, errors.New("body must hold exactly one JSON object")
	}
	return operation.ParseTopic(req.Topic)
}

func (s *Server) addTopic(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxJSONBody)
	topic, err := DecodeAddTopic(r.Body)
	if err != nil {
		writeError(w, bodyStatus(err), err)
		return
	}
	if err := s.backend.AddTopic(r.Context(), topic.String()); err != nil {
		s.fail(w, r, "add topic", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"topic": topic.String()})
}

// topicParam parses the {topic} path segment with the ParseID rule (so /v1/topics/chat/…
// addresses BLAKE3("chat")).
func topicParam(r *http.Request) (operation.Topic, error) {
	return operation.ParseTopic(r.PathValue("topic"))
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request) {
	topic, err := topicParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	msg, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxMsg))
	if err != nil {
		writeError(w, bodyStatus(err), fmt.Errorf("read message: %w", err))
		return
	}
	res, err := s.backend.Publish(r.Context(), topic.String(), msg)
	if err != nil {
		s.fail(w, r, "publish", err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) ack(w http.ResponseWriter, r *http.Request) {
	topic, err := topicParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	var req AckRequest
	if err := dec.Decode(&req); err != nil {
		writeError(w, bodyStatus(err), fmt.Errorf("body must be {\"hash\": \"...\"}: %w", err))
		return
	}
	hash, err := operation.ParseHash(req.Hash)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("hash: %w", err))
		return
	}
	if err := s.backend.Ack(r.Context(), topic.String(), hash.String()); err != nil {
		s.fail(w, r, "ack", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"topic": topic.String(), "hash": hash.String()})
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	topic, err := topicParam(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	from, err := ParseFrom(r.URL.Query().Get("from"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	// The request context ends when the client disconnects (or the server shuts down),
	// which stops the backend subscription.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	rc := http.NewResponseController(w)
	if !s.addStream(rc, cancel) {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("subscribe: shutting down: %w", ErrNotReady))
		return
	}
	defer s.removeStream(rc)
	events, stop, err := s.backend.Subscribe(ctx, topic.String(), from)
	if err != nil {
		s.fail(w, r, "subscribe", err)
		return
	}
	defer stop()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	// Some proxies buffer streaming responses; this asks nginx-style proxies not to.
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			line, err := json.Marshal(node.TopicEvent{Topic: topic, Event: ev})
			if err != nil {
				s.log.Error("admin events stream: event not sent", "topic", topic.String(), "err", err)
				continue
			}
			_ = rc.SetWriteDeadline(time.Now().Add(EventWriteTimeout))
			if ctx.Err() != nil {
				return // CloseStreams may have set its deadline before ours
			}
			if _, err := w.Write(append(line, '\n')); err != nil {
				return // client went away or does not read
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	}
}

// fail maps a backend error to a status code and logs server-side failures.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	code := http.StatusInternalServerError
	var ve *operation.ValidationError
	switch {
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrRejected), errors.As(err, &ve):
		code = http.StatusUnprocessableEntity
	case errors.Is(err, ErrNotReady):
		code = http.StatusServiceUnavailable
	case errors.Is(err, ErrLimit):
		code = http.StatusTooManyRequests
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		return // the client is gone; nobody reads a response
	}
	if code >= 500 {
		s.log.Error("admin request failed", "op", what, "path", r.URL.Path, "err", err)
	}
	writeError(w, code, fmt.Errorf("%s: %w", what, err))
}

func bodyStatus(err error) int {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, ErrorBody{Error: err.Error()})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
