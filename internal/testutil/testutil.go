// Package testutil is the one place for helpers that pandanet's tests share: polling for a
// condition, free loopback ports, the process's CPU time for benchmarks, and the rule for
// tests whose environment is missing.
//
// The rule for missing environments: a test that needs root, kubectl, a network namespace, a
// Docker engine or a cluster calls [Require] (or [Unavailable]). Outside CI it skips with one
// clear line; under CI=true it fails, because CI must never pass by not running a test.
//
// Negative checks ("nothing arrives") must not be written as a sleep followed by an
// assertion: wait for the event that proves nothing happened (a replay finished, a session
// ended, a later marker arrived) and assert after it.
package testutil

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI (CI=true or CI=1), where a missing environment
// is a failure, not a skip.
func InCI() bool {
	v := os.Getenv("CI")
	b, err := strconv.ParseBool(v)
	return err == nil && b
}

// Unavailable stops the test because something it needs is missing: it skips with why
// outside CI and fails under CI=true.
func Unavailable(tb testing.TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		tb.Fatalf("cannot run under CI=true: %s", msg)
	}
	tb.Skip(msg)
}

// Require stops the test with [Unavailable] when ok is false.
func Require(tb testing.TB, ok bool, format string, args ...any) {
	tb.Helper()
	if !ok {
		Unavailable(tb, format, args...)
	}
}

// RequireRoot stops the test when it does not run as root.
func RequireRoot(tb testing.TB, what string) {
	tb.Helper()
	Require(tb, os.Geteuid() == 0, "%s needs root", what)
}

// DefaultPoll is the interval at which [Eventually] checks its condition.
const DefaultPoll = 20 * time.Millisecond

// Eventually calls cond until it returns true, and fails the test with the last error cond
// returned (or msg) when timeout passes first. cond may return a nil error with false.
func Eventually(tb testing.TB, timeout time.Duration, msg string, cond func() (bool, error)) {
	tb.Helper()
	EventuallyEvery(tb, timeout, DefaultPoll, msg, cond)
}

// EventuallyEvery is [Eventually] with its own interval, for conditions that are costly to
// check (a Kubernetes API server or a node's admin API shared with the system under test).
func EventuallyEvery(tb testing.TB, timeout, interval time.Duration, msg string, cond func() (bool, error)) {
	tb.Helper()
	if err := PollEvery(context.Background(), timeout, interval, cond); err != nil {
		tb.Fatalf("%s: %v", msg, err)
	}
}

// Poll calls cond every [DefaultPoll] until it returns true, the context ends or timeout
// passes. The error names the last error cond returned, if any.
func Poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	return PollEvery(ctx, timeout, DefaultPoll, cond)
}

// PollEvery is [Poll] that checks every interval.
func PollEvery(ctx context.Context, timeout, interval time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("not true after %s, last error: %w", timeout, last)
			}
			return fmt.Errorf("not true after %s", timeout)
		case <-tick.C:
		}
	}
}

// portsHandedOut keeps every port FreePort returned in this process, so two callers never
// get the same one even when the first has not bound it yet.
var (
	portsMu        sync.Mutex
	portsHandedOut = map[int]bool{}
)

// FreePort returns a loopback TCP port that was free a moment ago and that no other caller
// in this process was given. Another process can still take it before it is bound, so code
// that can listen on port 0 and report its address should do that instead.
func FreePort(tb testing.TB) int {
	tb.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("free port: %v", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		portsMu.Lock()
		taken := portsHandedOut[port]
		portsHandedOut[port] = true
		portsMu.Unlock()
		if !taken {
			return port
		}
	}
	tb.Fatal("free port: no unused port after 100 tries")
	return 0
}

// ProcessCPU returns the user plus system CPU time the process used so far. Benchmarks
// report CPU per operation from it: on a shared machine it moves less than the wall time.
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcessWrittenBytes returns how many bytes the process has written to storage so far
// (getrusage's output blocks of 512 bytes: what reached the disk, not the page cache).
func ProcessWrittenBytes() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Oublock * 512
}
