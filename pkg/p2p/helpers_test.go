package p2p

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"

	"github.com/pandanet/pandanet/internal/testutil"
	"github.com/pandanet/pandanet/pkg/operation"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// process-wide singletons started by libp2p dependencies
		goleak.IgnoreTopFunction("github.com/libp2p/go-flow-metrics.(*sweeper).run"),
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
	)
}

var testNetwork = mustNetworkID("pandanet-test")

func mustNetworkID(s string) operation.NetworkID {
	id, err := operation.ParseNetworkID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func testLogger() *slog.Logger {
	if os.Getenv("P2P_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newTestHost starts a host on loopback TCP with the random walk off unless the caller
// turns it on; mutate adjusts the config.
func newTestHost(tb testing.TB, mutate func(*Config)) *Host {
	tb.Helper()
	key, err := operation.GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	cfg := Config{
		PrivateKey:        key,
		NetworkID:         testNetwork,
		ListenAddrs:       mustAddrs("/ip4/127.0.0.1/tcp/0"),
		DisableRandomWalk: true,
		Logger:            testLogger(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h, err := New(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := h.Close(); err != nil {
			tb.Errorf("close host: %v", err)
		}
	})
	return h
}

func info(h *Host) peer.AddrInfo {
	return peer.AddrInfo{ID: h.ID(), Addrs: h.Libp2p().Addrs()}
}

func connect(tb testing.TB, a, b *Host) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Connect(ctx, info(b)); err != nil {
		tb.Fatal(err)
	}
}

// eventually polls cond until it holds or the generous failure guard expires.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	testutil.EventuallyEvery(tb, 30*time.Second, 20*time.Millisecond, "waiting for "+what,
		func() (bool, error) { return cond(), nil })
}

func topicN(n byte) operation.Topic {
	var t operation.Topic
	t[0] = n
	return t
}
