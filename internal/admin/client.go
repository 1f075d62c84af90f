package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/pandanet/pandanet/pkg/node"
)

// Client talks to a panda-node admin API. It is safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	http  *http.Client
}

// ClientOption configures NewClient.
type ClientOption func(*Client)

// WithToken sends "Authorization: Bearer token" with every request.
func WithToken(token string) ClientOption { return func(c *Client) { c.token = token } }

// WithHTTPClient replaces http.DefaultClient. Do not set a Timeout on it if you use
// Subscribe: a timeout would cut the event stream; use contexts instead.
func WithHTTPClient(h *http.Client) ClientOption { return func(c *Client) { c.http = h } }

// NewClient returns a client for addr, which is either a base URL ("http://pod:7070") or a
// bare host:port ("127.0.0.1:7070", http assumed).
func NewClient(addr string, opts ...ClientOption) (*Client, error) {
	if addr == "" {
		return nil, errors.New("admin address is empty")
	}
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("admin address %q: %w", addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("admin address %q: scheme must be http or https", addr)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("admin address %q: no host", addr)
	}
	c := &Client{base: u, http: http.DefaultClient}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// APIError is a non-2xx answer of the admin API.
type APIError struct {
	StatusCode int
	Message    string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("admin API: %s (HTTP %d)", e.Message, e.StatusCode)
}

// Status returns GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.getJSON(ctx, "/v1/status", &st)
	return st, err
}

// Topics returns GET /v1/topics.
func (c *Client) Topics(ctx context.Context) ([]TopicStatus, error) {
	var ts []TopicStatus
	err := c.getJSON(ctx, "/v1/topics", &ts)
	return ts, err
}

// Peers returns GET /v1/peers.
func (c *Client) Peers(ctx context.Context) ([]PeerStatus, error) {
	var ps []PeerStatus
	err := c.getJSON(ctx, "/v1/peers", &ps)
	return ps, err
}

// AddTopic subscribes the node to topic (any string under the ParseID rule) and returns its
// hex id.
func (c *Client) AddTopic(ctx context.Context, topic string) (string, error) {
	body, _ := json.Marshal(AddTopicRequest{Topic: topic})
	resp, err := c.do(ctx, http.MethodPost, "/v1/topics", nil, "application/json", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		Topic string `json:"topic"`
	}
	if err := decodeBody(resp, &out); err != nil {
		return "", err
	}
	return out.Topic, nil
}

// Publish appends msg to the node's log for topic and waits until it was processed.
func (c *Client) Publish(ctx context.Context, topic string, msg []byte) (PublishResult, error) {
	resp, err := c.do(ctx, http.MethodPost, topicPath(topic, "publish"), nil, "application/octet-stream", bytes.NewReader(msg))
	if err != nil {
		return PublishResult{}, err
	}
	defer resp.Body.Close()
	var res PublishResult
	err = decodeBody(resp, &res)
	return res, err
}

// Ack acknowledges the operation hash of topic (and every earlier operation of its author's
// log in the topic). Under the explicit ack policy, operations not acknowledged are sent
// again to every frontier subscription.
func (c *Client) Ack(ctx context.Context, topic, hash string) error {
	body, _ := json.Marshal(AckRequest{Hash: hash})
	resp, err := c.do(ctx, http.MethodPost, topicPath(topic, "ack"), nil, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeBody(resp, nil)
}

// EventStream is an open events subscription. Call Close when done.
type EventStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
	err  error
}

// Subscribe opens GET /v1/topics/{topic}/events. The stream ends when ctx is cancelled,
// Close is called or the server goes away.
func (c *Client) Subscribe(ctx context.Context, topic string, from From) (*EventStream, error) {
	q := url.Values{}
	if from != "" {
		q.Set("from", string(from))
	}
	resp, err := c.do(ctx, http.MethodGet, topicPath(topic, "events"), q, "", nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, decodeBody(resp, nil)
	}
	sc := bufio.NewScanner(resp.Body)
	// An event carries a message of up to 1 MiB, base64-encoded.
	sc.Buffer(make([]byte, 0, 64<<10), 2*int(DefaultMaxMessageBytes)+64<<10)
	return &EventStream{body: resp.Body, sc: sc}, nil
}

// Next blocks for the next event, decoded from its JSON form into the node's types. It
// returns io.EOF when the server closed the stream and the context's error when it was
// cancelled.
func (s *EventStream) Next() (node.TopicEvent, error) {
	if s.err != nil {
		return node.TopicEvent{}, s.err
	}
	for s.sc.Scan() {
		line := bytes.TrimSpace(s.sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var ev node.TopicEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			s.err = fmt.Errorf("events stream: %w", err)
			return node.TopicEvent{}, s.err
		}
		return ev, nil
	}
	s.err = s.sc.Err()
	if s.err == nil {
		s.err = io.EOF
	}
	return node.TopicEvent{}, s.err
}

// Close ends the subscription.
func (s *EventStream) Close() error { return s.body.Close() }

func topicPath(topic, action string) string {
	return "/v1/topics/" + url.PathEscape(topic) + "/" + action
}

func (c *Client) getJSON(ctx context.Context, path string, out any) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeBody(resp, out)
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, contentType string, body io.Reader) (*http.Response, error) {
	u := *c.base
	// Keep the raw (escaped) path so a topic containing '/' stays one path segment.
	basePath := strings.TrimSuffix(u.Path, "/")
	u.Path, u.RawPath = "", ""
	if err := setPath(&u, basePath+path); err != nil {
		return nil, err
	}
	if q != nil {
		u.RawQuery = q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("admin request: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API %s %s: %w", method, path, err)
	}
	return resp, nil
}

func setPath(u *url.URL, escaped string) error {
	p, err := url.PathUnescape(escaped)
	if err != nil {
		return fmt.Errorf("admin path %q: %w", escaped, err)
	}
	u.Path, u.RawPath = p, escaped
	return nil
}

// decodeBody turns a non-2xx response into *APIError and decodes a 2xx body into out.
func decodeBody(resp *http.Response, out any) error {
	if resp.StatusCode/100 != 2 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var eb ErrorBody
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &eb) == nil && eb.Error != "" {
			msg = eb.Error
		}
		if msg == "" {
			msg = http.StatusText(resp.StatusCode)
		}
		return &APIError{StatusCode: resp.StatusCode, Message: msg}
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode admin response: %w", err)
	}
	return nil
}
