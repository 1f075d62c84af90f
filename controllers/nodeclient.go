package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// NodeTopicStatus is one entry of the node admin API's GET /v1/topics (docs/node-contract.md).
type NodeTopicStatus struct {
	Topic      string `json:"topic"`
	Operations int64  `json:"operations"`
	Authors    int64  `json:"authors"`
	// Logs are the heights of the author logs the node stores (highest seq number each).
	Logs []NodeLogStatus `json:"logs,omitempty"`
	// Policy is present when the topic has a write policy on the node (docs/policy.md).
	Policy *NodeTopicPolicy `json:"policy,omitempty"`
}

// NodeLogStatus is one author log of a node's topic and its height.
type NodeLogStatus struct {
	Author string `json:"author"`
	Height uint64 `json:"height"`
}

// NodeTopicPolicy is the part of a node's topic policy report the operator shows: stored
// usage and refusals by reason.
type NodeTopicPolicy struct {
	Usage struct {
		Ops   int64 `json:"ops"`
		Bytes int64 `json:"bytes"`
	} `json:"usage"`
	Refused map[string]int64 `json:"refused"`
	Authors []struct {
		Author string `json:"author"`
		Ops    int64  `json:"ops"`
		Bytes  int64  `json:"bytes"`
	} `json:"authors"`
}

// NodeEndpoint addresses one node's admin API.
type NodeEndpoint struct {
	Namespace string
	Network   string
	Pod       string
	Ordinal   int32
	// Token is the bearer token from the <network>-admin-token Secret.
	Token string
}

// NodeStatusClient reads status from a node's admin API. The HTTP implementation talks to
// real pods; tests inject a fake.
type NodeStatusClient interface {
	Topics(ctx context.Context, ep NodeEndpoint) ([]NodeTopicStatus, error)
}

// HTTPNodeStatusClient calls GET /v1/topics over plain HTTP inside the cluster.
type HTTPNodeStatusClient struct {
	Client *http.Client
	// BaseURL maps an endpoint to "http://host:port"; nil uses the pod's stable DNS name
	// under the headless Service, <pod>.<network>-headless.<ns>.svc:7070. (The admin port
	// is deliberately not on the per-node Services, which may be public.)
	BaseURL func(NodeEndpoint) string
}

// NewHTTPNodeStatusClient returns a client with short timeouts: a hung node must not stall
// a reconcile worker.
func NewHTTPNodeStatusClient() *HTTPNodeStatusClient {
	return &HTTPNodeStatusClient{Client: &http.Client{Timeout: 5 * time.Second}}
}

func (c *HTTPNodeStatusClient) baseURL(ep NodeEndpoint) string {
	if c.BaseURL != nil {
		return c.BaseURL(ep)
	}
	return fmt.Sprintf("http://%s.%s-headless.%s.svc:%d", ep.Pod, ep.Network, ep.Namespace, AdminPort)
}

// Topics implements NodeStatusClient.
func (c *HTTPNodeStatusClient) Topics(ctx context.Context, ep NodeEndpoint) ([]NodeTopicStatus, error) {
	url := c.baseURL(ep) + "/v1/topics"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("build request for %s: %w", ep.Pod, err)
	}
	if ep.Token != "" {
		req.Header.Set("Authorization", "Bearer "+ep.Token)
	}
	hc := c.Client
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("get topics from %s: %w", ep.Pod, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("get topics from %s: %s: %s", ep.Pod, resp.Status, body)
	}
	var out []NodeTopicStatus
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("decode topics from %s: %w", ep.Pod, err)
	}
	return out, nil
}
