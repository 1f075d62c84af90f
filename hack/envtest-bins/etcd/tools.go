//go:build tools

// Package tools pins the etcd server that envtest needs.
package tools

import _ "go.etcd.io/etcd/server/v3"
